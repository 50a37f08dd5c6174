package arpproxy_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/vif-project/vif/arpproxy"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed frames in testdata/arp from seedFrames")

// fuzzOwned is the address set of the fuzz target and of the seed frames.
var fuzzOwned = arpproxy.NewAddrSet(owned1, owned2)

// seedFrames are the frames stored in testdata/arp, with the verdict
// Respond must reach for them when owning fuzzOwned as ourMAC.
var seedFrames = []struct {
	file    string
	comment string
	frame   func(testing.TB) []byte
	verdict arpproxy.Verdict
	reason  arpproxy.DropReason
}{
	{
		file: "request-owned.hex", comment: "broadcast request from 02:00:00:00:00:02/198.51.100.2 for owned 192.0.2.1",
		frame:   request(peerMAC, peerIP, owned1).bytes,
		verdict: arpproxy.VerdictReply,
	},
	{
		file: "request-unicast.hex", comment: "request for owned 192.0.2.2 unicast to our MAC (RFC 1122 refresh)",
		frame:   request(peerMAC, peerIP, owned2).with(func(s *arpSpec) { s.ethDst = ourMAC }).bytes,
		verdict: arpproxy.VerdictReply,
	},
	{
		file: "request-unpadded.hex", comment: "request for owned 192.0.2.1, 42 bytes without Ethernet padding",
		frame:   func(tb testing.TB) []byte { return request(peerMAC, peerIP, owned1).bytes(tb)[:arpproxy.FrameLen] },
		verdict: arpproxy.VerdictReply,
	},
	{
		file: "probe.hex", comment: "RFC 5227 probe (sender IP 0.0.0.0) for owned 192.0.2.1",
		frame:   request(peerMAC, zeroIP, owned1).bytes,
		verdict: arpproxy.VerdictReply,
	},
	{
		file: "request-not-owned.hex", comment: "request for 192.0.2.99, not owned",
		frame:   request(peerMAC, peerIP, notOwned).bytes,
		verdict: arpproxy.VerdictNotOwned,
	},
	{
		file: "announcement-conflict.hex", comment: "another host announces owned 192.0.2.1 (conflict, not answered)",
		frame:   request(otherMAC, owned1, owned1).bytes,
		verdict: arpproxy.VerdictIgnore,
	},
	{
		file: "reply-conflict.hex", comment: "another host broadcasts a reply with owned 192.0.2.2 as sender IP (conflict)",
		frame:   reply(otherMAC, owned2, peerMAC, peerIP).with(func(s *arpSpec) { s.ethDst = bcastMAC }).bytes,
		verdict: arpproxy.VerdictIgnore,
	},
	{
		file: "short.hex", comment: "request truncated to 41 bytes",
		frame:   func(tb testing.TB) []byte { return request(peerMAC, peerIP, owned1).bytes(tb)[:41] },
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropShort,
	},
	{
		file: "ethertype-vlan.hex", comment: "EtherType 802.1Q",
		frame:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethType = layers.EthernetTypeDot1Q }).bytes,
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropEtherType,
	},
	{
		file: "hardware-type.hex", comment: "hardware type IEEE 802 (6)",
		frame:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.hwType = 6 }).bytes,
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropHardwareType,
	},
	{
		file: "protocol-len.hex", comment: "protocol address length 16",
		frame:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.protLen = 16 }).bytes,
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropProtocolLen,
	},
	{
		file: "opcode-inarp.hex", comment: "InARP request (opcode 8)",
		frame:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.op = 8 }).bytes,
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropOpcode,
	},
	{
		file: "source-mismatch.hex", comment: "Ethernet source differs from ARP sender hardware address",
		frame:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.ethSrc = otherMAC }).bytes,
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropSourceMismatch,
	},
	{
		file: "sender-broadcast-mac.hex", comment: "ARP sender hardware address ff:ff:ff:ff:ff:ff",
		frame:   request(peerMAC, peerIP, owned1).with(func(s *arpSpec) { s.sha = bcastMAC }).bytes,
		verdict: arpproxy.VerdictDrop, reason: arpproxy.DropSenderMAC,
	},
}

// TestSeedFrames checks that the frames in testdata/arp are the ones
// seedFrames describes and get the verdicts it says. Run with
// -update-seeds to rewrite them.
func TestSeedFrames(t *testing.T) {
	for _, s := range seedFrames {
		t.Run(s.file, func(t *testing.T) {
			want := s.frame(t)
			path := filepath.Join(seedDir, s.file)
			if *updateSeeds {
				var b strings.Builder
				fmt.Fprintf(&b, "# %s\n# Used by FuzzRespond and TestSeedFrames (go test -run TestSeedFrames -update-seeds rewrites it).\n", s.comment)
				for line := range slices.Chunk(want, 14) {
					b.WriteString(hex.EncodeToString(line) + "\n")
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readHexFrame(path)
			if err != nil {
				t.Fatalf("reading seed: %v (run with -update-seeds to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s is stale (run with -update-seeds):\ngot  % x\nwant % x", path, got, want)
			}
			res := arpproxy.Respond(make([]byte, arpproxy.FrameLen), got, ourMAC, fuzzOwned)
			if res.Verdict != s.verdict || res.Reason != s.reason {
				t.Errorf("Respond verdict = %v/%v, want %v/%v", res.Verdict, res.Reason, s.verdict, s.reason)
			}
		})
	}
}

// FuzzRespond feeds arbitrary frames to Respond. It must never panic; when
// it answers, the reply must be a valid ARP reply, checked with gopacket,
// for an owned address asked for by a well-formed request; writing the
// reply in place must give the same bytes as writing it to another buffer.
func FuzzRespond(f *testing.F) {
	entries, err := os.ReadDir(seedDir)
	if err != nil {
		f.Fatalf("reading seeds: %v", err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".hex" {
			continue
		}
		b, err := readHexFrame(filepath.Join(seedDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		out := make([]byte, arpproxy.FrameLen)
		res := arpproxy.Respond(out, frame, ourMAC, fuzzOwned)
		if !bytes.Equal(frame, orig) {
			t.Fatal("Respond modified its input")
		}

		// In place, on a copy with room for the reply.
		inPlace := append(bytes.Clone(frame), make([]byte, max(0, arpproxy.FrameLen-len(frame)))...)
		res2 := arpproxy.Respond(inPlace, inPlace[:len(frame)], ourMAC, fuzzOwned)
		if res.Verdict != res2.Verdict || res.Reason != res2.Reason ||
			res.Probe != res2.Probe || res.Conflict != res2.Conflict ||
			!bytes.Equal(res.Reply, res2.Reply) {
			t.Fatalf("in-place Respond differs: %+v vs %+v", res, res2)
		}

		err := arpproxy.Frame(frame).Validate()
		switch {
		case res.Verdict == arpproxy.VerdictDrop:
			if res.Reason == 0 || res.Reason >= arpproxy.NumDropReasons {
				t.Fatalf("drop without a valid reason: %+v", res)
			}
			if err != nil && err != res.Reason {
				t.Fatalf("Validate = %v but Respond dropped with %v", err, res.Reason)
			}
			if res.Reply != nil || res.Conflict || res.Probe {
				t.Fatalf("drop with other results set: %+v", res)
			}
			return
		case err != nil:
			t.Fatalf("Validate = %v but Respond said %v", err, res.Verdict)
		case res.Reason != 0:
			t.Fatalf("reason %v with verdict %v", res.Reason, res.Verdict)
		}

		req := arpproxy.Frame(frame)
		if res.Conflict != fuzzOwned.Contains(req.SenderIP()) {
			t.Fatalf("Conflict = %v for sender IP %v", res.Conflict, req.SenderIP())
		}
		if res.Verdict != arpproxy.VerdictReply {
			if res.Reply != nil || res.Probe {
				t.Fatalf("no reply but Reply or Probe set: %+v", res)
			}
			return
		}
		if req.Op() != arpproxy.OpRequest || !fuzzOwned.Contains(req.TargetIP()) || req.SenderIP() == req.TargetIP() {
			t.Fatalf("answered %v from %v for %v", req.Op(), req.SenderIP(), req.TargetIP())
		}
		if res.Probe != (req.SenderIP() == netip.IPv4Unspecified()) {
			t.Fatalf("Probe = %v for sender IP %v", res.Probe, req.SenderIP())
		}
		if len(res.Reply) != arpproxy.FrameLen || &res.Reply[0] != &out[0] {
			t.Fatal("Reply is not the FrameLen-byte prefix of out")
		}
		checkReply(t, res.Reply, arpSpec{
			sha: req.SenderHardwareAddr(), spa: req.SenderIP(), tpa: req.TargetIP(),
		})
		if err := res.Reply.Validate(); err != nil {
			t.Fatalf("reply does not validate: %v", err)
		}
	})
}
