//go:build !(linux && cgo)

package storage

// releaseHeap does nothing where the C library is not known to keep freed
// memory (see heap_glibc.go).
func releaseHeap() {}
