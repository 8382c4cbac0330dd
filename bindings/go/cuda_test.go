//go:build cuda

package gdn

import (
	"math"
	"testing"
)

// Decode on the CUDA backend with device memory equals decode on the CPU backend.
func TestCudaDecodeEqualsCPU(t *testing.T) {
	gpu, err := NewContext(CUDA, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	cpu, err := NewContext(CPU, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	cfg := DefaultLayerConfig()
	cfg.ActDType, cfg.OutDType = F32, F32
	const B, HK, HV, K, V = 3, 16, 32, 128, 128
	q, k, v := newBuf(t, F32, B, 1, HK, K), newBuf(t, F32, B, 1, HK, K), newBuf(t, F32, B, 1, HV, V)
	g, beta := newBuf(t, F32, B, 1, HV), newBuf(t, F32, B, 1, HV)
	state, out, slots := newBuf(t, F32, B+1, HV, K, V), newBuf(t, F32, B, 1, HV, V), newBuf(t, I32, B)
	fill(q, 1, 1)
	fill(k, 2, 1)
	fill(v, 3, 1)
	fill(state, 4, 0.1)
	for i := range g.Float32s() {
		g.Float32s()[i] = -0.05 * float32(i%7)
		beta.Float32s()[i] = 0.5
	}
	copy(slots.Int32s(), []int32{3, PadSlot, 0})
	gstate, gout := newBuf(t, F32, B+1, HV, K, V), newBuf(t, F32, B, 1, HV, V)
	copy(gstate.Float32s(), state.Float32s())

	bufs := []*Buffer{q, k, v, g, beta, gstate, slots, gout}
	dev := make([]uintptr, len(bufs))
	for i, b := range bufs {
		if dev[i] = deviceCopy(b); dev[i] == 0 {
			t.Fatal("cuda allocation/copy failed")
		}
		defer deviceFree(dev[i])
	}
	D := func(i int) *Tensor { x := DeviceTensor(dev[i], bufs[i].dtype, bufs[i].shape, nil); return &x }
	gl, err := NewLayer(gpu, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	if err := gl.Decode(DecodeArgs{Q: D(0), K: D(1), V: D(2), G: D(3), Beta: D(4), State: D(5), SlotIdx: D(6), Out: D(7)}, 0); err != nil {
		t.Fatal(err)
	}
	if !deviceRead(gstate, dev[5]) || !deviceRead(gout, dev[7]) {
		t.Fatal("cuda copy back failed")
	}
	cl, err := NewLayer(cpu, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	H := func(b *Buffer) *Tensor { x := b.Tensor(); return &x }
	if err := cl.Decode(DecodeArgs{Q: H(q), K: H(k), V: H(v), G: H(g), Beta: H(beta), State: H(state), SlotIdx: H(slots), Out: H(out)}, 0); err != nil {
		t.Fatal(err)
	}
	for i, x := range gout.Float32s() {
		if y := out.Float32s()[i]; math.Abs(float64(x-y)) > 1e-4+1e-4*math.Abs(float64(y)) {
			t.Fatalf("out[%d] gpu %g cpu %g", i, x, y)
		}
	}
	for i, x := range gstate.Float32s() {
		if y := state.Float32s()[i]; math.Abs(float64(x-y)) > 1e-5+1e-5*math.Abs(float64(y)) {
			t.Fatalf("state[%d] gpu %g cpu %g", i, x, y)
		}
	}
}
