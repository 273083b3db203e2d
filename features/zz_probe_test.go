package features

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/ndr-go/ndr/ingest"
)

func TestZZProbe(t *testing.T) {
	stream := synthStream(2_000_000, 5_000, 200_000, 5_000, 1)
	buf := make([]ingest.Conn, 1024)
	for k := 0; k < 2; k++ {
		d := &discard{}
		e, _ := NewEngine(DefaultConfig(), d, nil, memory.DefaultAllocator)
		st := time.Now()
		for i := 0; i < len(stream); i += 1024 {
			e.Process(context.Background(), fill(buf, stream[i:min(i+1024, len(stream))]))
		}
		p := time.Since(st)
		s := e.Stats()
		m := e.Memory()
		e.Flush(context.Background())
		fmt.Printf("process %v total %v stats %+v mem %+v rows %d sig %d\n", p, time.Since(st), s, m, d.rows, d.signals)
	}
}
