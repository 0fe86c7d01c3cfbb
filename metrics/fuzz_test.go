// SPDX-License-Identifier: GPL-2.0-or-later

package metrics

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xpra-proxy/xpra-proxy/stats"
)

// FuzzSnapshot: whatever document arrives as a MetricsReply, a snapshot
// that passes Check is collected without a panic (client_golang's Must*
// constructors panic on a wrong label count, invalid UTF-8 or a bad
// histogram), and one that does not is refused (up 0).
func FuzzSnapshot(f *testing.F) {
	s := stats.New(time.Unix(1700000000, 0))
	s.Connection("tcp", stats.Relayed)
	s.Login("ssl", "file", stats.Failed)
	s.Session(stats.OK)
	s.Setup(time.Second)
	s.RelayBytes(1<<40, 5)
	good, _ := json.Marshal(s.Snapshot(stats.Gauges{Relays: 1}))
	f.Add(good)
	f.Add([]byte(`{"logins":[{"labels":["a","b"],"value":1}]}`))
	f.Add([]byte(`{"connections":[{"labels":["\xff","x"],"value":1}]}`))
	f.Add([]byte(`{"setup":{"bounds":[1,1],"buckets":[0,0],"count":0}}`))
	f.Add([]byte(`{"setup":{"bounds":[1],"buckets":[2],"count":1}}`))
	f.Add([]byte(`{"bytes_from_client":18446744073709551615,"bytes_from_server":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sn stats.Snapshot
		if json.Unmarshal(b, &sn) != nil {
			return
		}
		checked := sn.Check() == nil
		c := NewCollector(func() (stats.Snapshot, error) { return sn, nil }, nil, quiet)
		ch := make(chan prometheus.Metric, 1024)
		go func() {
			defer close(ch)
			c.Collect(ch)
		}()
		n := 0
		for range ch {
			n++
		}
		if !checked && n != 1 {
			t.Errorf("a snapshot Check refused gave %d metrics, want up 0 alone", n)
		}
	})
}
