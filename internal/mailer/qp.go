package mailer

import (
	"io"
	"mime/quotedprintable"
)

func newQP(w io.Writer) *quotedprintable.Writer { return quotedprintable.NewWriter(w) }
