// Command loadgen is Pilotfish's HTTP/1.1 load generator for the benchmark harness.
//
// With -rate > 0 it is open-loop: request i is due at start + i/rate whatever happened to earlier
// requests, and its latency is measured from that due time, so a stalled server shows up as
// queueing delay instead of silently lowering the offered load (no coordinated omission). The
// schedule runs on a thread of its own that sleeps in nanosleep and writes each request itself
// on an idle keep-alive connection, so the generator adds tens of microseconds, not the
// millisecond the runtime's timers would. With -rate 0 it is closed-loop: -conns clients send
// back to back, which with -conns 1 measures the cost of one request in flight.
//
// Invariants: at most -conns connections, one request in flight on each; when all are busy, due
// requests wait in order and their wait counts as latency; the run is bounded (-warmup +
// -duration, then at most -timeout of draining, after which what is still unsent counts as
// dropped); only requests due (or sent) after -warmup are counted. The result is one JSON
// object on stdout. Standard library only.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"
)

type sample struct {
	due     time.Time // open loop: the schedule; closed loop: when the request was written
	sent    time.Time
	done    time.Time
	ok      bool
	dropped bool
}

type recorder struct {
	mu         sync.Mutex
	samples    []sample
	firstError string
}

func (r *recorder) add(s sample, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, s)
	if err != nil && r.firstError == "" {
		r.firstError = err.Error()
	}
}

// conn is one keep-alive connection carrying one request at a time.
type conn struct {
	c       net.Conn
	br      *bufio.Reader
	written chan sample // due and sent times of the request just written
}

type target struct {
	addr    string
	request []byte
	timeout time.Duration
}

func newTarget(raw string, timeout time.Duration) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, err
	}
	if u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
		return target{}, fmt.Errorf("only http://127.0.0.1 targets are allowed, got %q", raw)
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pilotfish-loadgen\r\n\r\n", u.RequestURI(), u.Host)
	return target{addr: u.Host, request: []byte(req), timeout: timeout}, nil
}

func (t target) dial() (*conn, error) {
	c, err := net.DialTimeout("tcp", t.addr, t.timeout)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, br: bufio.NewReaderSize(c, 32*1024), written: make(chan sample, 1)}, nil
}

func (t target) write(c *conn) error {
	if err := c.c.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return err
	}
	_, err := c.c.Write(t.request)
	return err
}

// read consumes one response; reusable is false when the connection must not carry another.
func (t target) read(c *conn) (reusable bool, err error) {
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return !resp.Close, fmt.Errorf("status %d", resp.StatusCode)
	}
	return !resp.Close, nil
}

// openLoop keeps the schedule; idle connections and due-but-unsent requests are shared under mu.
type openLoop struct {
	t       target
	rec     *recorder
	maxConn int

	mu       sync.Mutex
	idle     []*conn
	backlog  []time.Time
	opened   int
	stopping bool
	readers  sync.WaitGroup
	all      map[*conn]struct{}
}

// dispatch sends the request due at due now, or queues it behind the ones already waiting.
func (o *openLoop) dispatch(due time.Time) {
	o.mu.Lock()
	if len(o.backlog) > 0 || (len(o.idle) == 0 && o.opened >= o.maxConn) {
		o.backlog = append(o.backlog, due)
		o.mu.Unlock()
		return
	}
	var c *conn
	if n := len(o.idle); n > 0 {
		c = o.idle[n-1]
		o.idle = o.idle[:n-1]
	} else {
		o.opened++
	}
	o.mu.Unlock()
	if c == nil {
		var err error
		if c, err = o.t.dial(); err != nil {
			o.rec.add(sample{due: due, sent: due, done: time.Now()}, err)
			o.mu.Lock()
			o.opened--
			o.mu.Unlock()
			return
		}
		o.mu.Lock()
		o.all[c] = struct{}{}
		o.mu.Unlock()
		o.readers.Add(1)
		go o.readLoop(c)
	}
	o.send(c, due)
}

func (o *openLoop) send(c *conn, due time.Time) {
	sent := time.Now()
	if err := o.t.write(c); err != nil {
		o.rec.add(sample{due: due, sent: sent, done: time.Now()}, err)
		c.c.Close() // the reader sees the error and retires the connection
		close(c.written)
		return
	}
	c.written <- sample{due: due, sent: sent}
}

func (o *openLoop) readLoop(c *conn) {
	defer o.readers.Done()
	for s := range c.written {
		reusable, err := o.t.read(c)
		s.done, s.ok = time.Now(), err == nil
		o.rec.add(s, err)
		o.mu.Lock()
		if !reusable || o.stopping {
			o.opened--
			delete(o.all, c)
			o.mu.Unlock()
			c.c.Close()
			return
		}
		if len(o.backlog) > 0 {
			next := o.backlog[0]
			o.backlog = o.backlog[1:]
			o.mu.Unlock()
			o.send(c, next)
			continue
		}
		o.idle = append(o.idle, c)
		o.mu.Unlock()
	}
	c.c.Close()
}

func sleepUntil(due time.Time) {
	for {
		wait := time.Until(due)
		if wait <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(wait))
		_ = syscall.Nanosleep(&ts, nil) // EINTR just means sleeping again
	}
}

func runOpen(t target, rate float64, conns int, warmup, duration time.Duration, rec *recorder) time.Time {
	o := &openLoop{t: t, rec: rec, maxConn: conns, all: map[*conn]struct{}{}}
	total := int(rate * (warmup + duration).Seconds())
	interval := float64(time.Second) / rate
	start := time.Now().Add(20 * time.Millisecond)

	runtime.LockOSThread()
	// Linux lets a sleeping thread wake up to 50 us late by default; the schedule wants less.
	const prSetTimerslack = 29
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		sleepUntil(due)
		o.dispatch(due)
	}
	runtime.UnlockOSThread()

	hardDeadline := start.Add(warmup + duration + t.timeout)
	for time.Now().Before(hardDeadline) {
		o.mu.Lock()
		busy := o.opened - len(o.idle)
		waiting := len(o.backlog)
		o.mu.Unlock()
		if busy == 0 && waiting == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	o.mu.Lock()
	o.stopping = true
	for _, due := range o.backlog {
		rec.add(sample{due: due, dropped: true}, nil)
	}
	o.backlog = nil
	for c := range o.all {
		c.c.Close()
	}
	for _, c := range o.idle {
		close(c.written)
	}
	o.idle = nil
	o.mu.Unlock()
	o.readers.Wait()
	return start.Add(warmup)
}

func runClosed(t target, conns int, warmup, duration time.Duration, rec *recorder) time.Time {
	measureFrom := time.Now().Add(warmup)
	end := measureFrom.Add(duration)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *conn
			for {
				sent := time.Now()
				if !sent.Before(end) {
					break
				}
				var err error
				if c == nil {
					if c, err = t.dial(); err != nil {
						rec.add(sample{due: sent, sent: sent, done: time.Now()}, err)
						continue
					}
				}
				reusable := false
				if err = t.write(c); err == nil {
					reusable, err = t.read(c)
				}
				rec.add(sample{due: sent, sent: sent, done: time.Now(), ok: err == nil}, err)
				if !reusable {
					c.c.Close()
					c = nil
				}
			}
			if c != nil {
				c.c.Close()
			}
		}()
	}
	wg.Wait()
	return measureFrom
}

type report struct {
	Mode         string  `json:"mode"`
	OfferedRate  float64 `json:"offered_rate"`
	Conns        int     `json:"conns"`
	MeasuredSecs float64 `json:"measured_s"`
	Counted      int     `json:"counted"`
	OK           int     `json:"ok"`
	OKTotal      int     `json:"ok_total"`
	Errors       int     `json:"errors"`
	Dropped      int     `json:"dropped"`
	AchievedRate float64 `json:"achieved_rate"`
	P50ms        float64 `json:"p50_ms"`
	P90ms        float64 `json:"p90_ms"`
	P99ms        float64 `json:"p99_ms"`
	P999ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	SendLagP50ms float64 `json:"send_lag_p50_ms"`
	SendLagP99ms float64 `json:"send_lag_p99_ms"`
	FirstError   string  `json:"first_error,omitempty"`
}

// percentile is the nearest-rank percentile of an ascending slice, in milliseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	idx := int(math.Ceil(q*float64(len(sorted)))) - 1
	if idx < 0 {
		idx = 0
	}
	if idx >= len(sorted) {
		idx = len(sorted) - 1
	}
	return float64(sorted[idx]) / float64(time.Millisecond)
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// summarise counts the requests due after the warm-up; the achieved rate is the successes that
// completed inside the measured window, so a growing queue shows as a shortfall. Latency runs
// from the due time; send lag (due to written) is the generator's own delay plus any queueing.
func summarise(rec *recorder, mode string, rate float64, conns int, from time.Time, duration time.Duration) report {
	rep := report{Mode: mode, OfferedRate: rate, Conns: conns, MeasuredSecs: duration.Seconds(), FirstError: rec.firstError}
	until := from.Add(duration)
	var latencies, lags []time.Duration
	completed := 0
	for _, s := range rec.samples {
		if s.ok {
			rep.OKTotal++
			if !s.done.Before(from) && !s.done.After(until) {
				completed++
			}
		}
		if s.due.Before(from) {
			continue
		}
		rep.Counted++
		switch {
		case s.ok:
			rep.OK++
			latencies = append(latencies, s.done.Sub(s.due))
			lags = append(lags, s.sent.Sub(s.due))
		case s.dropped:
			rep.Dropped++
		default:
			rep.Errors++
		}
	}
	sortDurations(latencies)
	sortDurations(lags)
	rep.AchievedRate = float64(completed) / duration.Seconds()
	rep.P50ms = percentile(latencies, 0.50)
	rep.P90ms = percentile(latencies, 0.90)
	rep.P99ms = percentile(latencies, 0.99)
	rep.P999ms = percentile(latencies, 0.999)
	rep.MaxMs = percentile(latencies, 1)
	rep.SendLagP50ms = percentile(lags, 0.50)
	rep.SendLagP99ms = percentile(lags, 0.99)
	return rep
}

func main() {
	rawURL := flag.String("url", "", "URL to request (http://127.0.0.1 only)")
	rate := flag.Float64("rate", 0, "requests per second; 0 means closed loop")
	conns := flag.Int("conns", 64, "connections (open loop: the most requests in flight)")
	duration := flag.Duration("duration", 5*time.Second, "measured duration")
	warmup := flag.Duration("warmup", time.Second, "leading time whose requests are not counted")
	timeout := flag.Duration("timeout", 2*time.Second, "per-request timeout and drain allowance")
	flag.Parse()
	t, err := newTarget(*rawURL, *timeout)
	if err != nil || *conns < 1 || *duration <= 0 || *rate < 0 {
		fmt.Fprintln(os.Stderr, "usage: loadgen -url http://127.0.0.1:PORT/PATH [-rate R] [-conns N] [-duration D] [-warmup W]", err)
		os.Exit(2)
	}

	rec := &recorder{}
	mode := "closed"
	var measureFrom time.Time
	if *rate > 0 {
		mode = "open"
		// The schedule keeps one thread for itself; responses need another.
		if runtime.GOMAXPROCS(0) < 2 {
			runtime.GOMAXPROCS(2)
		}
		measureFrom = runOpen(t, *rate, *conns, *warmup, *duration, rec)
	} else {
		measureFrom = runClosed(t, *conns, *warmup, *duration, rec)
	}
	out, _ := json.Marshal(summarise(rec, mode, *rate, *conns, measureFrom, *duration))
	fmt.Println(string(out))
}
