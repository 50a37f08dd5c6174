package ndpproxy_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vif-project/vif/ndpproxy"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed frames in testdata/ndp from seedFrames")

// fuzzOwned is the address set of the fuzz target and of the seed frames.
var fuzzOwned = ndpproxy.NewAddrSet(owned1, owned2)

// seedFrames are the frames stored in testdata/ndp, with the verdict
// Respond must reach for them when owning fuzzOwned as ourSelf.
var seedFrames = []struct {
	file    string
	comment string
	frame   ndpSpec
	verdict ndpproxy.Verdict
	reason  ndpproxy.DropReason
}{
	{file: "solicitation-owned.hex", comment: "multicast solicitation from 02:00:00:00:00:02/2001:db8::2 for owned 2001:db8::10",
		frame: solicit(peerMAC, peerIP, owned1), verdict: ndpproxy.VerdictReply},
	{file: "solicitation-link-local.hex", comment: "multicast solicitation from fe80::2 for owned 2001:db8::20",
		frame: solicit(peerMAC, peerLL, owned2), verdict: ndpproxy.VerdictReply},
	{file: "solicitation-unicast.hex", comment: "unicast solicitation (Neighbor Unreachability Detection) for owned 2001:db8::10, no source link-layer address",
		frame: unicastSolicit(peerMAC, peerIP, owned1, ourMAC), verdict: ndpproxy.VerdictReply},
	{file: "dad-probe.hex", comment: "Duplicate Address Detection probe (source ::) for owned 2001:db8::10",
		frame: dadProbe(peerMAC, owned1), verdict: ndpproxy.VerdictReply},
	{file: "dad-probe-nonce.hex", comment: "Duplicate Address Detection probe with a nonce option (RFC 7527) for owned 2001:db8::20",
		frame: dadProbe(peerMAC, owned2).with(func(s *ndpSpec) { s.raw = appendOpt([]byte{14, 1, 1, 2, 3, 4, 5, 6}) }), verdict: ndpproxy.VerdictReply},
	{file: "solicitation-not-owned.hex", comment: "solicitation for 2001:db8::11, not owned",
		frame: solicit(peerMAC, peerIP, notOwned), verdict: ndpproxy.VerdictNotOwned},
	{file: "advertisement-conflict.hex", comment: "another host advertises owned 2001:db8::10 (conflict, not answered)",
		frame: advertise(otherMAC, peerLL, owned1), verdict: ndpproxy.VerdictIgnore},
	{file: "advertisement-other.hex", comment: "another host advertises 2001:db8::2",
		frame: advertise(otherMAC, peerLL, peerIP), verdict: ndpproxy.VerdictIgnore},
	{file: "short.hex", comment: "solicitation cut in its target address",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw, s.keepChecksum = func(b []byte) []byte { return b[:70] }, true }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropShort},
	{file: "next-header-hop-by-hop.hex", comment: "next header 0 (hop-by-hop options) instead of ICMPv6",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = func(b []byte) []byte { b[20] = 0; return b } }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropNextHeader},
	{file: "hop-limit-254.hex", comment: "solicitation with hop limit 254 (RFC 4861 7.1.1)",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.hop = 254 }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropHopLimit},
	{file: "icmp-length-20.hex", comment: "ICMPv6 length 20, under 24 (RFC 4861 7.1.1)",
		frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) {
			s.lladdr = nil
			s.raw = func(b []byte) []byte { b[19] = 20; return b[:74] }
		}), verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropICMPLength},
	{file: "checksum.hex", comment: "solicitation with a wrong checksum (RFC 4861 7.1.1)",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw, s.keepChecksum = func(b []byte) []byte { b[56] ^= 0xff; return b }, true }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropChecksum},
	{file: "code-1.hex", comment: "ICMPv6 code 1 (RFC 4861 7.1.1)",
		frame: solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.code = 1 }), verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropCode},
	{file: "target-multicast.hex", comment: "target ff02::1 (RFC 4861 7.1.1)",
		frame: solicit(peerMAC, peerIP, allNodes), verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropTarget},
	{file: "option-length-zero.hex", comment: "an option of length zero (RFC 4861 4.6, 7.1.1)",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.raw = appendOpt(make([]byte, 8)) }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropOptionLength},
	{file: "dad-to-all-nodes.hex", comment: "solicitation from :: sent to ff02::1, not to a solicited-node address (RFC 4861 7.1.1)",
		frame:   dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.dst, s.ethDst = allNodes, nodesMAC }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropDADDestination},
	{file: "dad-source-lladdr.hex", comment: "solicitation from :: with a source link-layer address option (RFC 4861 7.1.1)",
		frame:   dadProbe(peerMAC, owned1).with(func(s *ndpSpec) { s.lladdr = peerMAC }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropDADOption},
	{file: "advertisement-solicited-multicast.hex", comment: "advertisement to ff02::1 with the Solicited flag (RFC 4861 7.1.2)",
		frame:   advertise(otherMAC, peerLL, peerIP).with(func(s *ndpSpec) { s.flags = 0x60 }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropSolicitedMulticast},
	{file: "source-mismatch.hex", comment: "source link-layer address 02:00:00:00:00:03, Ethernet source 02:00:00:00:00:02",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.lladdr = otherMAC }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropSourceMismatch},
	{file: "destination-other-group.hex", comment: "solicitation for 2001:db8::10 sent to the solicited-node group of 2001:db8::20",
		frame:   solicit(peerMAC, peerIP, owned1).with(func(s *ndpSpec) { s.dst, s.ethDst = ndpproxy.SolicitedNode(owned2), snMAC(owned2) }),
		verdict: ndpproxy.VerdictDrop, reason: ndpproxy.DropDestination},
}

// TestSeedFrames checks that the frames in testdata/ndp are the ones
// seedFrames describes and get the verdicts it says. Run with
// -update-seeds to rewrite them.
func TestSeedFrames(t *testing.T) {
	for _, s := range seedFrames {
		t.Run(s.file, func(t *testing.T) {
			want := s.frame.bytes(t)
			path := filepath.Join(seedDir, s.file)
			if *updateSeeds {
				var b strings.Builder
				fmt.Fprintf(&b, "# %s\n# Used by FuzzRespond and TestSeedFrames (go test ./ndpproxy -run TestSeedFrames -update-seeds rewrites it).\n", s.comment)
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
			res := ndpproxy.Respond(make([]byte, ndpproxy.ReplyLen), got, ourSelf, fuzzOwned)
			if res.Verdict != s.verdict || res.Reason != s.reason {
				t.Errorf("Respond verdict = %v/%v, want %v/%v", res.Verdict, res.Reason, s.verdict, s.reason)
			}
			if res.Verdict == ndpproxy.VerdictReply {
				checkReply(t, res.Reply, s.frame)
			}
		})
	}
}

// FuzzRespond feeds arbitrary frames to Respond. It must never panic and
// never modify its input; when it answers, the answer must be a valid
// Neighbor Advertisement, checked with gopacket and mdlayher/ndp, for an
// owned address asked by a valid solicitation; writing it in place must
// give the same bytes as writing it to another buffer; every drop has a
// reason, the one Validate gives when Validate fails. Each input is also
// tried with its checksum computed, so that the fuzzer gets past that
// check to the options and addresses.
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
		fuzzRespond(t, frame)
		if len(frame) >= 58 && 54+(int(frame[18])<<8|int(frame[19])) <= len(frame) {
			fixed := bytes.Clone(frame)
			fixChecksum(fixed)
			fuzzRespond(t, fixed)
		}
	})
}

// fuzzRespond checks Respond on one frame.
func fuzzRespond(t *testing.T, frame []byte) {
	orig := bytes.Clone(frame)
	out := make([]byte, ndpproxy.ReplyLen)
	res := ndpproxy.Respond(out, frame, ourSelf, fuzzOwned)
	if !bytes.Equal(frame, orig) {
		t.Fatal("Respond modified its input")
	}

	// In place, on a copy with room for the reply.
	inPlace := append(bytes.Clone(frame), make([]byte, max(0, ndpproxy.ReplyLen-len(frame)))...)
	res2 := ndpproxy.Respond(inPlace, inPlace[:len(frame)], ourSelf, fuzzOwned)
	if res.Verdict != res2.Verdict || res.Reason != res2.Reason ||
		res.DAD != res2.DAD || res.Conflict != res2.Conflict ||
		!bytes.Equal(res.Reply, res2.Reply) {
		t.Fatalf("in-place Respond differs: %+v vs %+v", res, res2)
	}

	err := ndpproxy.Frame(frame).Validate()
	switch {
	case res.Verdict == ndpproxy.VerdictDrop:
		if res.Reason == 0 || res.Reason >= ndpproxy.NumDropReasons {
			t.Fatalf("drop without a valid reason: %+v", res)
		}
		if err != nil && err != res.Reason {
			t.Fatalf("Validate = %v but Respond dropped with %v", err, res.Reason)
		}
		if res.Reply != nil || res.Conflict || res.DAD {
			t.Fatalf("drop with other results set: %+v", res)
		}
		return
	case err != nil:
		t.Fatalf("Validate = %v but Respond said %v", err, res.Verdict)
	case res.Reason != 0:
		t.Fatalf("reason %v with verdict %v", res.Reason, res.Verdict)
	}

	req := ndpproxy.Frame(frame)
	if !checksumOK(frame) || req.HopLimit() != 255 || req.Code() != 0 {
		t.Fatalf("accepted a frame with checksum ok %v, hop limit %d, code %d", checksumOK(frame), req.HopLimit(), req.Code())
	}
	ns := req.Type() == ndpproxy.TypeNeighborSolicitation
	if !ns {
		if res.Verdict != ndpproxy.VerdictIgnore || res.Conflict != fuzzOwned.Contains(req.Target()) {
			t.Fatalf("advertisement: %+v", res)
		}
		return
	}
	if res.Conflict != (!req.Source().IsUnspecified() && fuzzOwned.Contains(req.Source())) {
		t.Fatalf("Conflict = %v for source %v", res.Conflict, req.Source())
	}
	if res.Verdict != ndpproxy.VerdictReply {
		if res.Verdict != ndpproxy.VerdictNotOwned || fuzzOwned.Contains(req.Target()) || res.Reply != nil || res.DAD {
			t.Fatalf("solicitation for %v: %+v", req.Target(), res)
		}
		return
	}
	if !fuzzOwned.Contains(req.Target()) {
		t.Fatalf("answered for %v, not owned", req.Target())
	}
	if res.DAD != req.Source().IsUnspecified() {
		t.Fatalf("DAD = %v for source %v", res.DAD, req.Source())
	}
	if len(res.Reply) != ndpproxy.ReplyLen || &res.Reply[0] != &out[0] {
		t.Fatal("Reply is not the ReplyLen-byte prefix of out")
	}
	spec := ndpSpec{ethSrc: req.EthernetSrc(), src: req.Source(), target: req.Target()}
	if ll, ok := req.LinkLayerAddr(); ok {
		spec.lladdr = ll
	}
	checkReply(t, res.Reply, spec)
	if err := res.Reply.Validate(); err != nil {
		t.Fatalf("reply does not validate: %v", err)
	}
}
