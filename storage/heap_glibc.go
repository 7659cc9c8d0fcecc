//go:build linux && cgo

package storage

/*
#include <features.h>
#ifdef __GLIBC__
#include <malloc.h>
static void bastion_release_heap(void) { malloc_trim(0); }
#else
static void bastion_release_heap(void) {}
#endif
*/
import "C"

// releaseHeap returns the C heap's free memory to the operating system:
// SQLite's caches live there, and glibc keeps what they free unless asked
// (malloc_trim). Elsewhere it does nothing.
func releaseHeap() { C.bastion_release_heap() }
