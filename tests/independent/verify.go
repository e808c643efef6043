// Independent verification of a Socle journal with the Go team's own
// implementations: golang.org/x/mod/sumdb/note (signed notes, the format C2SP
// signed-note describes) and golang.org/x/mod/sumdb/tlog (the RFC 6962/9162 tree
// hashing, inclusion and consistency proofs of the Go checksum database).
// None of Socle's code is involved: if this program accepts a journal, a second
// implementation agrees with Socle's.
//
// Usage: go run verify.go http://127.0.0.1:8080   (see scripts/independent-verify)
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var base string

func get(path string) []byte {
	resp, err := http.Get(base + path)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		fail("GET %s: HTTP %d %s %v", path, resp.StatusCode, body, err)
	}
	return body
}

func fail(format string, args ...interface{}) {
	fmt.Printf("independent verification FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func b64hash(s string) tlog.Hash {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		fail("%q is not a base64 SHA-256 hash", s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

// openCheckpoint verifies the note's signature and parses origin, size and root.
func openCheckpoint(msg string, v note.Verifier) (int64, tlog.Hash) {
	n, err := note.Open([]byte(msg), note.VerifierList(v))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != v.Name() {
		fail("checkpoint text %q: bad origin line", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size %q: %v", lines[1], err)
	}
	return size, b64hash(lines[2])
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: verify BASE_URL")
		os.Exit(2)
	}
	base = strings.TrimRight(os.Args[1], "/")

	key := strings.TrimSpace(string(get("/journal/key")))
	v, err := note.NewVerifier(key)
	if err != nil {
		fail("verifier key %q: %v", key, err)
	}
	size, root := openCheckpoint(string(get("/journal/checkpoint")), v)

	// Rebuild the tree from the leaves, with tlog's storage layout.
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			out[i] = stored[x]
		}
		return out, nil
	})
	var leafHashes []tlog.Hash
	for next := int64(0); next < size; {
		var page struct {
			Entries []struct {
				Index int64  `json:"index"`
				Leaf  string `json:"leaf"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(get(fmt.Sprintf("/journal/entries?start=%d&count=1000", next)), &page); err != nil {
			fail("entries: %v", err)
		}
		if len(page.Entries) == 0 {
			fail("entries stop at %d, the checkpoint says %d", next, size)
		}
		for _, e := range page.Entries {
			if e.Index != next {
				fail("expected entry %d, got %d", next, e.Index)
			}
			leaf, err := base64.StdEncoding.DecodeString(e.Leaf)
			if err != nil {
				fail("entry %d: %v", e.Index, err)
			}
			hashes, err := tlog.StoredHashes(next, leaf, reader)
			if err != nil {
				fail("entry %d: %v", e.Index, err)
			}
			stored = append(stored, hashes...)
			leafHashes = append(leafHashes, tlog.RecordHash(leaf))
			next++
		}
	}
	th, err := tlog.TreeHash(size, reader)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if th != root {
		fail("the entries hash to %s, the signed checkpoint says %s", th, root)
	}

	// Every inclusion proof served checks against the signed root (all of them for a
	// small log, a spread sample for a large one).
	step := size/500 + 1
	proofs := 0
	for i := int64(0); i < size; i += step {
		var p struct {
			Root   string   `json:"root"`
			Hashes []string `json:"hashes"`
		}
		if err := json.Unmarshal(get(fmt.Sprintf("/journal/proof/inclusion?index=%d&size=%d", i, size)), &p); err != nil {
			fail("inclusion proof %d: %v", i, err)
		}
		proof := make(tlog.RecordProof, len(p.Hashes))
		for j, h := range p.Hashes {
			proof[j] = b64hash(h)
		}
		if err := tlog.CheckRecord(proof, size, root, i, leafHashes[i]); err != nil {
			fail("inclusion proof of entry %d: %v", i, err)
		}
		proofs++
	}

	// Every signed checkpoint: valid signature, root of that prefix, and a consistency
	// proof to the latest.
	checkpoints := 0
	for after := int64(0); ; {
		var page struct {
			Checkpoints []struct {
				Size int64  `json:"size"`
				Note string `json:"note"`
			} `json:"checkpoints"`
		}
		if err := json.Unmarshal(get(fmt.Sprintf("/journal/checkpoints?after=%d&limit=1000", after)), &page); err != nil {
			fail("checkpoints: %v", err)
		}
		if len(page.Checkpoints) == 0 {
			break
		}
		for _, c := range page.Checkpoints {
			after = c.Size
			m, mroot := openCheckpoint(c.Note, v)
			if m > size {
				continue // signed after the checkpoint we verified
			}
			if h, err := tlog.TreeHash(m, reader); err != nil || h != mroot {
				fail("checkpoint of size %d does not match the entries", m)
			}
			if m > 0 && m < size {
				var p struct {
					Hashes []string `json:"hashes"`
				}
				if err := json.Unmarshal(get(fmt.Sprintf("/journal/proof/consistency?from=%d&to=%d", m, size)), &p); err != nil {
					fail("consistency proof: %v", err)
				}
				proof := make(tlog.TreeProof, len(p.Hashes))
				for j, h := range p.Hashes {
					proof[j] = b64hash(h)
				}
				if err := tlog.CheckTree(proof, size, root, m, mroot); err != nil {
					fail("consistency proof %d -> %d: %v", m, size, err)
				}
			}
			checkpoints++
		}
	}
	fmt.Printf("independent verification OK (golang.org/x/mod sumdb/note + sumdb/tlog): origin %s, %d entries, root %s, %d inclusion proofs, %d checkpoints consistent\n",
		v.Name(), size, root, proofs, checkpoints)
}
