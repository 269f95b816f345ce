package bus

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// natsLogger routes the embedded server's log lines to slog.
type natsLogger struct{ log *slog.Logger }

var _ server.Logger = natsLogger{}

func (l natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l natsLogger) Fatalf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l natsLogger) Errorf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l natsLogger) Debugf(f string, v ...any)  { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l natsLogger) Tracef(f string, v ...any)  {}
