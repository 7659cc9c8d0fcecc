package certauth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// A KRL is an OpenSSH key revocation list that revokes certificates by
// serial number or key ID, per certificate authority. sshd reads it from
// the file its RevokedKeys option names; "ssh-keygen -Q -f FILE CERT"
// checks a certificate against it.
//
// The format is OpenSSH's PROTOCOL.krl. Marshal writes only what bastion
// needs of it: the header and one KRL_SECTION_CERTIFICATES section per CA,
// holding serial lists (KRL_SECTION_CERT_SERIAL_LIST), serial ranges
// (KRL_SECTION_CERT_SERIAL_RANGE) and key IDs (KRL_SECTION_CERT_KEY_ID).
// It never writes bitmaps, plain-key or fingerprint sections, or the
// signature section that OpenSSH 9.4 and later refuse.
type KRL struct {
	// Version increases each time the list changes (krl_version).
	Version uint64
	// Generated is when the list was made; it is stored in whole seconds.
	// The zero time is written as 0.
	Generated time.Time
	// Comment is free text for humans; it must not contain a NUL byte.
	Comment string
	// Revoked lists what each CA key revoked. A CA may appear more than
	// once; its entries are merged.
	Revoked []RevokedSerials
}

// RevokedSerials revokes certificates signed by one CA key.
type RevokedSerials struct {
	// CA is the public key that signed the certificates: a plain key, not
	// a certificate.
	CA ssh.PublicKey
	// Serials are the revoked serial numbers, in any order, duplicates
	// allowed. Serial 0 cannot be revoked: OpenSSH refuses a KRL that
	// names it, and bastion never issues it.
	Serials []uint64
	// KeyIDs revokes every certificate of this CA whose key ID is one of
	// these, whatever its serial. Empty IDs and IDs with a NUL byte are
	// refused.
	KeyIDs []string
}

// KRL format constants, from PROTOCOL.krl.
const (
	krlMagic         = "SSHKRL\n\x00"
	krlFormatVersion = 1

	krlSectionCertificates = 1

	krlCertSerialList  = 0x20
	krlCertSerialRange = 0x21
	krlCertKeyID       = 0x23
)

// minRange is the shortest run of consecutive serials written as a range
// section (21 bytes) rather than as list entries (8 bytes each).
const minRange = 3

// Marshal encodes the list in the OpenSSH KRL format. The output depends
// only on k's contents: CAs are ordered by their wire encoding, serials
// are sorted and deduplicated, and runs of consecutive serials become
// ranges. A CA with nothing revoked gets no section.
func (k *KRL) Marshal() ([]byte, error) {
	if strings.ContainsRune(k.Comment, 0) {
		return nil, errors.New("krl: comment contains a NUL byte")
	}
	var generated uint64
	if !k.Generated.IsZero() {
		if k.Generated.Unix() < 0 {
			return nil, fmt.Errorf("krl: generated date %v is before 1970", k.Generated)
		}
		generated = uint64(k.Generated.Unix())
	}
	cas, err := mergeRevoked(k.Revoked)
	if err != nil {
		return nil, err
	}

	var b bytes.Buffer
	b.WriteString(krlMagic)
	b.Write(binary.BigEndian.AppendUint32(nil, krlFormatVersion))
	b.Write(binary.BigEndian.AppendUint64(nil, k.Version))
	b.Write(binary.BigEndian.AppendUint64(nil, generated))
	b.Write(binary.BigEndian.AppendUint64(nil, 0)) // flags: none defined
	writeString(&b, nil)                           // reserved
	writeString(&b, []byte(k.Comment))
	for _, ca := range cas {
		b.WriteByte(krlSectionCertificates)
		writeString(&b, ca.section())
	}
	return b.Bytes(), nil
}

// revokedCA is one CA's revocations, normalized.
type revokedCA struct {
	blob    []byte // the CA key's wire encoding
	serials []uint64
	keyIDs  []string
}

// mergeRevoked checks rs and returns one normalized entry per CA with
// anything revoked, ordered by the CA key's wire encoding.
func mergeRevoked(rs []RevokedSerials) ([]*revokedCA, error) {
	byKey := map[string]*revokedCA{}
	for i, r := range rs {
		if r.CA == nil {
			return nil, fmt.Errorf("krl: entry %d has no CA key", i)
		}
		if _, ok := r.CA.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("krl: entry %d: the CA key is a certificate, want a plain key", i)
		}
		blob := r.CA.Marshal()
		ca := byKey[string(blob)]
		if ca == nil {
			ca = &revokedCA{blob: blob}
			byKey[string(blob)] = ca
		}
		for _, s := range r.Serials {
			if s == 0 {
				return nil, fmt.Errorf("krl: CA %s: serial 0 cannot be revoked", ssh.FingerprintSHA256(r.CA))
			}
			ca.serials = append(ca.serials, s)
		}
		for _, id := range r.KeyIDs {
			if id == "" || strings.ContainsRune(id, 0) {
				return nil, fmt.Errorf("krl: CA %s: key ID %q cannot be revoked", ssh.FingerprintSHA256(r.CA), id)
			}
			ca.keyIDs = append(ca.keyIDs, id)
		}
	}
	var cas []*revokedCA
	for _, ca := range byKey {
		if len(ca.serials) == 0 && len(ca.keyIDs) == 0 {
			continue
		}
		slices.Sort(ca.serials)
		ca.serials = slices.Compact(ca.serials)
		slices.Sort(ca.keyIDs)
		ca.keyIDs = slices.Compact(ca.keyIDs)
		cas = append(cas, ca)
	}
	slices.SortFunc(cas, func(a, b *revokedCA) int { return bytes.Compare(a.blob, b.blob) })
	return cas, nil
}

// section returns the body of the CA's KRL_SECTION_CERTIFICATES: the CA
// key, the reserved string, then one serial list with every serial not
// in a run, one range section per run (in ascending order) and one key ID
// section.
func (ca *revokedCA) section() []byte {
	var b bytes.Buffer
	writeString(&b, ca.blob)
	writeString(&b, nil) // reserved

	var list, ranges []byte
	for i := 0; i < len(ca.serials); {
		j := i + 1
		for j < len(ca.serials) && ca.serials[j] == ca.serials[j-1]+1 {
			j++
		}
		if j-i >= minRange {
			var r []byte
			r = binary.BigEndian.AppendUint64(r, ca.serials[i])
			r = binary.BigEndian.AppendUint64(r, ca.serials[j-1])
			ranges = append(ranges, krlCertSerialRange)
			ranges = appendString(ranges, r)
		} else {
			for _, s := range ca.serials[i:j] {
				list = binary.BigEndian.AppendUint64(list, s)
			}
		}
		i = j
	}
	if len(list) > 0 {
		b.WriteByte(krlCertSerialList)
		writeString(&b, list)
	}
	b.Write(ranges)
	if len(ca.keyIDs) > 0 {
		var ids []byte
		for _, id := range ca.keyIDs {
			ids = appendString(ids, []byte(id))
		}
		b.WriteByte(krlCertKeyID)
		writeString(&b, ids)
	}
	return b.Bytes()
}

// writeString writes s as an SSH wire "string": a uint32 length, then s.
func writeString(b *bytes.Buffer, s []byte) {
	b.Write(appendString(nil, s))
}

func appendString(dst, s []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
