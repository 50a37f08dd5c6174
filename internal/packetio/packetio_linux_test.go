//go:build linux

package packetio

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
)

// TestRawIOAllocs checks, on a veth pair in a fresh network namespace, that
// the serve loop's I/O on a real packet socket does not allocate per frame
// (packet.Conn's ReadFrom and WriteTo allocate about 20 times per pair),
// and that a closed socket reads as net.ErrClosed.
func TestRawIOAllocs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root (CAP_NET_ADMIN) to create network namespaces")
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(b)
	ns, va, vb := "pio-"+suffix+"-io", "piox-"+suffix, "pioy-"+suffix
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "add", va, "type", "veth", "peer", "name", vb},
		{"-n", ns, "link", "set", va, "up"},
		{"-n", ns, "link", "set", vb, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() {
				if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
					t.Errorf("deleting namespace %s: %v: %s", ns, err, out)
				}
			})
		}
	}

	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with the goroutine, namespace
		// and all.
		runtime.LockOSThread()
		errc <- func() error {
			h, err := netns.GetFromName(ns)
			if err != nil {
				return err
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				return err
			}
			ifa, err := net.InterfaceByName(va)
			if err != nil {
				return err
			}
			ifb, err := net.InterfaceByName(vb)
			if err != nil {
				return err
			}
			ca, err := packet.Listen(ifa, packet.Raw, etherTypeTest, nil)
			if err != nil {
				return err
			}
			defer ca.Close()
			cb, err := packet.Listen(ifb, packet.Raw, etherTypeTest, nil)
			if err != nil {
				return err
			}
			log := slog.New(slog.DiscardHandler)
			wa, rb := New(ca, log), New(cb, log)
			if _, ok := wa.(*rawIO); !ok {
				return errors.New("New(*packet.Conn) is not a rawIO")
			}
			f := testFrame(ifa.HardwareAddr)
			buf := make([]byte, 1600)
			// Frames sent before the veth's carrier is up are lost: wait
			// until one makes the round trip.
			warm := false
			for deadline := time.Now().Add(5 * time.Second); !warm && time.Now().Before(deadline); {
				cb.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if wa.Write(f, broadcast) == nil {
					n, err := rb.Read(buf)
					warm = err == nil && string(buf[:n]) == string(f)
				}
			}
			cb.SetReadDeadline(time.Time{})
			if !warm {
				return errors.New("no frame made the round trip between the veths")
			}
			// Should a frame still be lost, fail rather than hang.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-time.After(30 * time.Second):
					cb.Close()
				case <-stop:
				}
			}()
			var ioErr error
			allocs := testing.AllocsPerRun(200, func() {
				if err := wa.Write(f, broadcast); err != nil {
					ioErr = err
					return
				}
				n, err := rb.Read(buf)
				if err != nil || string(buf[:n]) != string(f) {
					ioErr = errors.Join(errors.New("read back a different frame"), err)
				}
			})
			if ioErr != nil {
				return ioErr
			}
			if allocs != 0 {
				t.Errorf("raw write+read allocates %v times per frame, want 0", allocs)
			}

			// Closing the socket under a blocked read ends it with
			// net.ErrClosed.
			go func() {
				time.Sleep(50 * time.Millisecond)
				cb.Close()
			}()
			if _, err := rb.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after Close = %v, want net.ErrClosed", err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// etherTypeTest is the EtherType of the test's frames: 0x88B5, IEEE
// 802's "local experimental" EtherType, which no protocol of the kernel
// answers.
const etherTypeTest = 0x88b5

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// testFrame returns a 60-byte broadcast frame from src with EtherType
// etherTypeTest.
func testFrame(src net.HardwareAddr) []byte {
	f := make([]byte, 60)
	copy(f, broadcast)
	copy(f[6:], src)
	f[12], f[13] = etherTypeTest>>8, etherTypeTest&0xff
	copy(f[14:], "vif packetio test")
	return f
}
