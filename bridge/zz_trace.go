package bridge

// Temporary timeline trace; not to be committed.

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

var traceN atomic.Int64

func trace(what string) {
	fmt.Fprintf(os.Stderr, "TRACE %s %s\n", time.Now().Format("15:04:05.000"), what)
}
