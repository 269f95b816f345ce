package reply

import (
	"net/http"
	"strconv"
	"time"

	"github.com/opsgraph/ops/internal/config"
)

// Window reads the ?since= (a duration up to max, default 1h) and ?limit=
// (1 to maxLimit, default 20) of a top-list endpoint; when one is wrong
// it answers 400 naming it and returns false.
func Window(w http.ResponseWriter, r *http.Request, max time.Duration, maxLimit int) (since time.Duration, limit int, ok bool) {
	q := r.URL.Query()
	since, limit = time.Hour, 20
	if v := q.Get("since"); v != "" {
		d, err := config.ParseDuration(v)
		if err != nil || d <= 0 || d > max {
			Error(w, http.StatusBadRequest, "since", "since: want a duration up to "+config.Duration(max).String()+" (what is kept), such as 15m or 1h; got "+strconv.Quote(v))
			return 0, 0, false
		}
		since = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			Error(w, http.StatusBadRequest, "limit", "limit: want 1 to "+strconv.Itoa(maxLimit))
			return 0, 0, false
		}
		limit = n
	}
	return since, limit, true
}
