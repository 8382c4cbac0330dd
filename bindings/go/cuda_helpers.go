//go:build cuda

package gdn

// Device memory helpers for the CUDA tests (build tag "cuda"; links libcudart).

/*
#cgo LDFLAGS: -L/usr/local/cuda/lib64 -lcudart
#include <stdint.h>
#include <stddef.h>
int cudaMalloc(void** p, size_t n);
int cudaFree(void* p);
int cudaMemcpy(void* dst, const void* src, size_t n, int kind);
int cudaDeviceSynchronize(void);
static uintptr_t go_cuda_alloc(size_t n) { void* p = 0; return cudaMalloc(&p, n) == 0 ? (uintptr_t)p : 0; }
static int go_cuda_upload(uintptr_t dst, const void* src, size_t n) { return cudaMemcpy((void*)dst, src, n, 1); }
static int go_cuda_download(void* dst, uintptr_t src, size_t n) { return cudaMemcpy(dst, (const void*)src, n, 2); }
static int go_cuda_free(uintptr_t p) { return cudaFree((void*)p); }
*/
import "C"

// deviceCopy uploads a host buffer and returns the device address (0 on failure).
func deviceCopy(b *Buffer) uintptr {
	p := C.go_cuda_alloc(C.size_t(b.bytes + 1))
	if p == 0 || C.go_cuda_upload(p, b.ptr, C.size_t(b.bytes)) != 0 {
		return 0
	}
	return uintptr(p)
}

// deviceRead copies device memory back into a host buffer.
func deviceRead(b *Buffer, p uintptr) bool {
	return C.cudaDeviceSynchronize() == 0 && C.go_cuda_download(b.ptr, C.uintptr_t(p), C.size_t(b.bytes)) == 0
}

func deviceFree(p uintptr) { C.go_cuda_free(C.uintptr_t(p)) }
