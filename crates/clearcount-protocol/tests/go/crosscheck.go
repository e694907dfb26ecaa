// Cross-check of clearcount's config log against Go's golang.org/x/mod
// sumdb/tlog (RFC 6962 tree hashes and proofs) and sumdb/note (signed
// notes). Built and run by tests/tlog_go.rs; reads commands on stdin and
// answers on stdout, one line each (see that file).
//
// The cosignature/v1 verifier and signer below are written from
// c2sp.org/tlog-cosignature and plugged into x/mod's note.Open/note.Sign.
package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var b64 = base64.StdEncoding

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func dec(s string) []byte {
	b, err := b64.DecodeString(s)
	if err != nil {
		die("bad base64 %q: %v", s, err)
	}
	return b
}

func hashes(list string) []tlog.Hash {
	var out []tlog.Hash
	if list == "-" {
		return out
	}
	for _, s := range strings.Split(list, ",") {
		h, err := tlog.ParseHash(s)
		if err != nil {
			die("bad hash %q", s)
		}
		out = append(out, h)
	}
	return out
}

func join(hs []tlog.Hash) string {
	if len(hs) == 0 {
		return "-"
	}
	var s []string
	for _, h := range hs {
		s = append(s, h.String())
	}
	return strings.Join(s, ",")
}

func atoi(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		die("bad number %q", s)
	}
	return n
}

// cosignature/v1 (signature type 0x04).
func cosigKeyHash(name string, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{0x04})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func cosigMessage(ts uint64, text []byte) []byte {
	return append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), text...)
}

type cosigVerifier struct {
	name string
	pub  ed25519.PublicKey
}

func (v cosigVerifier) Name() string    { return v.name }
func (v cosigVerifier) KeyHash() uint32 { return cosigKeyHash(v.name, v.pub) }
func (v cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	return ed25519.Verify(v.pub, cosigMessage(ts, msg), sig[8:])
}

type cosigSigner struct {
	name string
	priv ed25519.PrivateKey
	ts   uint64
}

func (s cosigSigner) Name() string    { return s.name }
func (s cosigSigner) KeyHash() uint32 { return cosigKeyHash(s.name, s.priv.Public().(ed25519.PublicKey)) }
func (s cosigSigner) Sign(msg []byte) ([]byte, error) {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], s.ts)
	return append(ts[:], ed25519.Sign(s.priv, cosigMessage(s.ts, msg))...), nil
}

// parseVkey04 reads a type-0x04 vkey: name+hash+base64(0x04||key).
func parseVkey04(vkey string) cosigVerifier {
	p := strings.SplitN(vkey, "+", 3)
	raw := dec(p[2])
	if len(p) != 3 || raw[0] != 0x04 || len(raw) != 33 {
		die("not a cosignature vkey: %s", vkey)
	}
	v := cosigVerifier{p[0], ed25519.PublicKey(raw[1:])}
	if fmt.Sprintf("%08x", v.KeyHash()) != p[1] {
		die("cosignature vkey %s: key ID does not match", vkey)
	}
	return v
}

// parseSkey04 reads a type-0x04 skey: PRIVATE+KEY+name+hash+base64(0x04||seed).
func parseSkey04(skey string, ts uint64) cosigSigner {
	p := strings.SplitN(strings.TrimPrefix(skey, "PRIVATE+KEY+"), "+", 3)
	raw := dec(p[2])
	if len(p) != 3 || raw[0] != 0x04 || len(raw) != 33 {
		die("not a cosignature skey")
	}
	s := cosigSigner{p[0], ed25519.NewKeyFromSeed(raw[1:]), ts}
	if fmt.Sprintf("%08x", s.KeyHash()) != p[1] {
		die("cosignature skey: key ID does not match")
	}
	return s
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		var hs []tlog.Hash
		for _, i := range idx {
			hs = append(hs, stored[i])
		}
		return hs, nil
	})
	var leafHashes []tlog.Hash
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "leaf": // leaf <base64 data>: append a record
			var data []byte
			if f[1] != "-" {
				data = dec(f[1])
			}
			n := int64(len(leafHashes))
			hs, err := tlog.StoredHashes(n, data, reader)
			if err != nil {
				die("%v", err)
			}
			stored = append(stored, hs...)
			leafHashes = append(leafHashes, tlog.RecordHash(data))
			fmt.Fprintf(out, "leaf %d %s\n", n, leafHashes[n])
		case "root": // root <n>
			h, err := tlog.TreeHash(atoi(f[1]), reader)
			if err != nil {
				die("%v", err)
			}
			fmt.Fprintf(out, "root %s %s\n", f[1], h)
		case "incl": // incl <size> <index> <rust proof>: Go's proof, and Go's check of Rust's
			t, n := atoi(f[1]), atoi(f[2])
			p, err := tlog.ProveRecord(t, n, reader)
			if err != nil {
				die("%v", err)
			}
			th, _ := tlog.TreeHash(t, reader)
			ok := tlog.CheckRecord(tlog.RecordProof(hashes(f[3])), t, th, n, leafHashes[n]) == nil
			fmt.Fprintf(out, "incl %d %d %s %v\n", t, n, join(p), ok)
		case "cons": // cons <size> <old> <rust proof>
			t, n := atoi(f[1]), atoi(f[2])
			p, err := tlog.ProveTree(t, n, reader)
			if err != nil {
				die("%v", err)
			}
			th, _ := tlog.TreeHash(t, reader)
			h, _ := tlog.TreeHash(n, reader)
			ok := tlog.CheckTree(tlog.TreeProof(hashes(f[3])), t, th, n, h) == nil
			fmt.Fprintf(out, "cons %d %d %s %v\n", t, n, join(p), ok)
		case "open": // open <base64 note> <log vkey> [<cosigner vkey>]: verify a note
			vs := []note.Verifier{}
			v, err := note.NewVerifier(f[2])
			if err != nil {
				die("vkey: %v", err)
			}
			vs = append(vs, v)
			if len(f) > 3 {
				vs = append(vs, parseVkey04(f[3]))
			}
			n, err := note.Open(dec(f[1]), note.VerifierList(vs...))
			if err != nil {
				fmt.Fprintf(out, "open error %s\n", strings.ReplaceAll(err.Error(), " ", "_"))
				continue
			}
			var names []string
			for _, s := range n.Sigs {
				names = append(names, fmt.Sprintf("%s/%08x", s.Name, s.Hash))
			}
			fmt.Fprintf(out, "open ok %s %s\n", b64.EncodeToString([]byte(n.Text)), strings.Join(names, ","))
		case "sign": // sign <base64 text> <log skey> [<cosigner skey> <time>]
			signers := []note.Signer{}
			s, err := note.NewSigner(f[2])
			if err != nil {
				die("skey: %v", err)
			}
			signers = append(signers, s)
			if len(f) > 4 {
				signers = append(signers, parseSkey04(f[3], uint64(atoi(f[4]))))
			}
			msg, err := note.Sign(&note.Note{Text: string(dec(f[1]))}, signers...)
			if err != nil {
				die("sign: %v", err)
			}
			fmt.Fprintf(out, "sign %s\n", b64.EncodeToString(msg))
		case "keygen": // keygen <name>: a Go key pair
			skey, vkey, err := note.GenerateKey(nil, f[1])
			if err != nil {
				die("%v", err)
			}
			fmt.Fprintf(out, "keygen %s %s\n", skey, vkey)
		default:
			die("unknown command %q", f[0])
		}
	}
}
