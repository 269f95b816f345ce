package bus

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// natsLogger routes the embedded server's log lines to slog. diskErr,
// when set, hears of a write that found the disk full: the server's file
// store then refuses every later write to that stream (its write error
// sticks) and says so only in its log.
type natsLogger struct {
	log     *slog.Logger
	diskErr func()
}

var _ server.Logger = natsLogger{}

func (l natsLogger) Noticef(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l natsLogger) Warnf(f string, v ...any)   { l.log.Warn(fmt.Sprintf(f, v...)) }
func (l natsLogger) Fatalf(f string, v ...any)  { l.log.Error(fmt.Sprintf(f, v...)) }
func (l natsLogger) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if l.diskErr != nil && strings.Contains(msg, "no space left on device") {
		l.diskErr()
	}
	l.log.Error(msg)
}
func (l natsLogger) Debugf(f string, v ...any) { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l natsLogger) Tracef(f string, v ...any) {}
