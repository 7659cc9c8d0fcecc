package recorder

import (
	"context"
	"testing"

	"github.com/bastionhq/bastion/storage"
)

func BenchmarkZZVerifyLeafy(b *testing.B) {
	key, _ := ParseJournalKey("PRIVATE+KEY+conformance.example/journal+a53b5f18+AUNtb/7TV7AeDoHlo6gKUKXcplqEb/4XSTwLH2xC4pOl")
	st, err := storage.OpenSQLite(context.Background(), "/tmp/leafy.db", storage.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < b.N; i++ {
		r, err := Verify(context.Background(), st, VerifyOptions{Verifier: key.Verifier})
		if err != nil || !r.Intact() {
			b.Fatal(err, r.Problems)
		}
	}
}
