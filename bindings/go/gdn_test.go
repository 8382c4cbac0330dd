package gdn

import (
	"errors"
	"math"
	"testing"
)

func fill(b *Buffer, seed int64, mul float32) {
	for i, x := 0, b.Float32s(); i < len(x); i++ {
		x[i] = float32((((int64(i)+seed)*7919)%2001)-1000) / 1024 * mul
	}
}

func newBuf(t *testing.T, dt DType, shape ...int64) *Buffer {
	b, err := NewBuffer(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// reference: float64 recurrent gated delta rule for one head.
func step(S []float64, K, V int, q, k, v []float64, g, beta, scale float64) []float64 {
	norm := func(x []float64) []float64 {
		ss := 0.0
		for _, e := range x {
			ss += e * e
		}
		out := make([]float64, len(x))
		for i, e := range x {
			out[i] = e / math.Sqrt(ss+1e-6)
		}
		return out
	}
	q, k = norm(q), norm(k)
	for i := range S {
		S[i] *= math.Exp(g)
	}
	u := make([]float64, V)
	for j := 0; j < V; j++ {
		kv := 0.0
		for i := 0; i < K; i++ {
			kv += S[i*V+j] * k[i]
		}
		u[j] = beta * (v[j] - kv)
	}
	o := make([]float64, V)
	for j := 0; j < V; j++ {
		for i := 0; i < K; i++ {
			S[i*V+j] += k[i] * u[j]
			o[j] += S[i*V+j] * q[i] * scale
		}
	}
	return o
}

func TestDecodeMatchesReference(t *testing.T) {
	ctx, err := NewContext(CPU, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	cfg := DefaultLayerConfig()
	cfg.NumKHeads, cfg.NumVHeads, cfg.HeadKDim, cfg.HeadVDim = 1, 2, 8, 4
	cfg.ActDType, cfg.OutDType, cfg.FP8GroupSize = F32, F32, 8
	layer, err := NewLayer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	const B, HK, HV, K, V = 2, 1, 2, 8, 4
	q, k, v := newBuf(t, F32, B, 1, HK, K), newBuf(t, F32, B, 1, HK, K), newBuf(t, F32, B, 1, HV, V)
	g, beta := newBuf(t, F32, B, 1, HV), newBuf(t, F32, B, 1, HV)
	state, out, slots := newBuf(t, F32, 2, HV, K, V), newBuf(t, F32, B, 1, HV, V), newBuf(t, I32, B)
	fill(q, 1, 1)
	fill(k, 2, 1)
	fill(v, 3, 1)
	fill(state, 4, 0.5)
	for i := range g.Float32s() {
		g.Float32s()[i] = -0.25 * float32(i%3)
		beta.Float32s()[i] = 0.2 + 0.1*float32(i)
	}
	slots.Int32s()[0], slots.Int32s()[1] = 1, PadSlot
	want := make([]float64, B*HV*V)
	S0 := make([]float64, len(state.Float32s()))
	for i, x := range state.Float32s() {
		S0[i] = float64(x)
	}
	for h := 0; h < HV; h++ {
		S := S0[(1*HV+h)*K*V : (1*HV+h+1)*K*V]
		qq, kk, vv := make([]float64, K), make([]float64, K), make([]float64, V)
		for i := 0; i < K; i++ {
			qq[i], kk[i] = float64(q.Float32s()[i]), float64(k.Float32s()[i])
		}
		for j := 0; j < V; j++ {
			vv[j] = float64(v.Float32s()[h*V+j])
		}
		o := step(S, K, V, qq, kk, vv, float64(g.Float32s()[h]), float64(beta.Float32s()[h]), 1/math.Sqrt(K))
		copy(want[h*V:], o)
	}
	T := func(b *Buffer) *Tensor { x := b.Tensor(); return &x }
	args := DecodeArgs{Q: T(q), K: T(k), V: T(v), G: T(g), Beta: T(beta), State: T(state), SlotIdx: T(slots), Out: T(out)}
	if err := layer.Decode(args, 0); err != nil {
		t.Fatal(err)
	}
	for i, x := range out.Float32s() {
		if math.Abs(float64(x)-want[i]) > 1e-4 {
			t.Fatalf("out[%d] = %g, want %g", i, x, want[i])
		}
	}
	for i, x := range state.Float32s() {
		if math.Abs(float64(x)-S0[i]) > 1e-4 {
			t.Fatalf("state[%d] = %g, want %g", i, x, S0[i])
		}
	}
}

func TestErrorsCarryStatusAndLeaveOutputs(t *testing.T) {
	ctx, err := NewContext(CPU, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	cfg := DefaultLayerConfig()
	cfg.NumKHeads = 3 // 32 value heads are not a multiple of 3
	if _, err := NewLayer(ctx, cfg); err == nil {
		t.Fatal("expected an error")
	} else {
		var e *Error
		if !errors.As(err, &e) || e.Status != InvalidArgument || e.Message == "" {
			t.Fatalf("unexpected error %v", err)
		}
	}
	cfg = DefaultLayerConfig()
	if cfg.BF16Prefill {
		t.Fatal("the default prefill precision is fp32")
	}
	cfg.BF16Prefill = true // a permission: any backend takes it
	if low, err := NewLayer(ctx, cfg); err != nil {
		t.Fatal(err)
	} else {
		low.Close()
	}
	cfg = DefaultLayerConfig()
	layer, err := NewLayer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	out := newBuf(t, BF16, 1, 1, 32, 128)
	for i := range out.Uint16s() {
		out.Uint16s()[i] = 0x7fc0
	}
	bad := newBuf(t, BF16, 1, 1, 16, 64) // wrong K
	T := func(b *Buffer) *Tensor { x := b.Tensor(); return &x }
	err = layer.Decode(DecodeArgs{Q: T(bad), K: T(bad), V: T(out), Out: T(out)}, 0)
	var e *Error
	if !errors.As(err, &e) || e.Status != BadShape {
		t.Fatalf("want BadShape, got %v", err)
	}
	for _, x := range out.Uint16s() {
		if x != 0x7fc0 {
			t.Fatal("output written on error")
		}
	}
	if _, err := NewContext(Backend(42), 0, 0); err == nil {
		t.Fatal("expected an error for a bad backend")
	}
	if maj, _, _ := Version(); maj != 0 {
		t.Fatalf("unexpected major version %d", maj)
	}
}
