package ipip_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/vif-project/vif/ipip"
)

func TestError(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	texts := make(map[string]ipip.Error)
	names := make(map[string]ipip.Error)
	for e := ipip.Error(1); e < ipip.NumErrors; e++ {
		t.Run(e.Name(), func(t *testing.T) {
			msg := e.Error()
			if !strings.HasPrefix(msg, "ipip: ") || len(msg) == len("ipip: ") || strings.Contains(msg, "unknown") {
				t.Errorf("Error() = %q, want \"ipip: <reason>\"", msg)
			}
			if prev, dup := texts[msg]; dup {
				t.Errorf("Error() = %q, same as for %d", msg, prev)
			}
			texts[msg] = e

			name := e.Name()
			if !snake.MatchString(name) {
				t.Errorf("Name() = %q, not snake_case", name)
			}
			if prev, dup := names[name]; dup {
				t.Errorf("Name() = %q, same as for %d", name, prev)
			}
			names[name] = e

			var err error = e
			if !errors.Is(err, e) {
				t.Error("errors.Is(e, e) = false")
			}
			wrapped := fmt.Errorf("tunnel0: %w", e)
			if !errors.Is(wrapped, e) {
				t.Error("errors.Is(wrapped, e) = false")
			}
			var got ipip.Error
			if !errors.As(wrapped, &got) || got != e {
				t.Errorf("errors.As(wrapped) = %v, want %v", got, e)
			}
			for o := ipip.Error(1); o < ipip.NumErrors; o++ {
				if o != e && errors.Is(wrapped, o) {
					t.Errorf("errors.Is(%v, %v) = true", wrapped, o)
				}
			}
		})
	}
	for _, e := range []ipip.Error{0, ipip.NumErrors, 255} {
		if got, want := e.Error(), "ipip: unknown error"; got != want {
			t.Errorf("Error(%d).Error() = %q, want %q", e, got, want)
		}
		if got, want := e.Name(), "unknown"; got != want {
			t.Errorf("Error(%d).Name() = %q, want %q", e, got, want)
		}
	}
}

func TestErrorInner(t *testing.T) {
	want := map[ipip.Error]ipip.Error{
		ipip.ErrTruncated: ipip.ErrInnerTruncated,
		ipip.ErrVersion:   ipip.ErrInnerVersion,
		ipip.ErrHeaderLen: ipip.ErrInnerHeaderLen,
		ipip.ErrTotalLen:  ipip.ErrInnerTotalLen,
	}
	for e := ipip.Error(0); e <= ipip.NumErrors; e++ {
		w, ok := want[e]
		if !ok {
			w = e // every other reason maps to itself
		}
		if got := e.Inner(); got != w {
			t.Errorf("%v.Inner() = %v, want %v", e.Name(), got.Name(), w.Name())
		}
	}
}
