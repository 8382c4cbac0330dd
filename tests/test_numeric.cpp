// The portable conversions of src/common/numeric.hpp: exhaustive round trips and nearest-even
// rounding against brute-force references.
#include <vector>

#include "fp8_ref.hpp"
#include "test_util.hpp"

using namespace gdn;

namespace {

float next_up(float x) { return std::nextafter(x, INFINITY); }

// FastDiv (the GPU kernels' index decoding) equals the integer division: every dividend below
// 2^17 for every divisor up to 4096, and dividends up to 2^31 - 1 (ends, powers of two and their
// neighbours, pseudo-random) for divisors up to 2^20 and the largest.
TEST(Numeric, FastDivEqualsDivision) {
  std::vector<uint32_t> big;
  for (int b = 0; b < 31; ++b)
    for (int64_t x : {int64_t(1) << b, (int64_t(1) << b) - 1, (int64_t(1) << b) + 1}) big.push_back(uint32_t(x));
  big.push_back(0x7fffffffu), big.push_back(0x7ffffffeu);
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 4096; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    big.push_back(uint32_t(seed >> 33));  // < 2^31
  }
  auto check = [](uint32_t d, uint32_t n) {
    const FastDiv f(d);
    if (f.div(n) != n / d) {
      ADD_FAILURE() << n << " / " << d << ": " << f.div(n);
      return false;
    }
    return true;
  };
  for (uint32_t d = 1; d <= 4096; ++d)
    for (uint32_t n = 0; n < (1u << 17); ++n)
      if (!check(d, n)) return;
  for (uint32_t d = 1; d <= (1u << 20); d = d < 4096 ? d + 1 : d * 3 / 2 + 1)
    for (uint32_t n : big)
      if (!check(d, n)) return;
  for (uint32_t d : {0x7ffffffeu, 0x7fffffffu, 0x40000000u, 0x40000001u, 65535u, 65536u, 65537u})
    for (uint32_t n : big)
      if (!check(d, n)) return;
  EXPECT_EQ(FastDiv(0).div(7), 7u);  // a divisor of 0 is taken as 1
}

TEST(Numeric, Bf16RoundTripsEveryCode) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const float f = bf16_to_f32(uint16_t(c));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), uint16_t(c)) << c;
  }
}

TEST(Numeric, Bf16RoundsToNearestEven) {
  std::mt19937 rng(1);
  for (int i = 0; i < 200000; ++i) {
    const float x = bits_f32(rng());
    if (!std::isfinite(x)) continue;
    const uint16_t r = f32_to_bf16(x);
    const double got = bf16_to_f32(r), lo = bf16_to_f32(uint16_t(f32_bits(x) >> 16));
    const double hi = bf16_to_f32(uint16_t((f32_bits(x) >> 16) + 1));
    if (std::isinf(hi) || std::isinf(lo)) continue;
    const double el = std::fabs(double(x) - lo), eh = std::fabs(double(x) - hi);
    const double want = el < eh ? lo : eh < el ? hi : ((f32_bits(x) >> 16) & 1 ? hi : lo);
    ASSERT_EQ(got, want) << x;
  }
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(f32_to_bf16(bits_f32(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(f32_to_bf16(3.4e38f), 0x7f80);                // rounds up to inf
}

TEST(Numeric, F16RoundTripsEveryCodeAndRoundsToNearestEven) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const float f = f16_to_f32(uint16_t(c));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), uint16_t(c)) << c;
  }
  // Against the neighbouring fp16 values for random floats in fp16 range (normal and subnormal).
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> mag(-25.0f, 16.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(1.0f + (rng() % 1000000) / 1e6f, int(mag(rng))) * ((rng() & 1) ? -1.0f : 1.0f);
    const uint16_t r = f32_to_f16(x);
    const double got = f16_to_f32(r);
    if (std::isinf(got)) {
      ASSERT_GE(std::fabs(x), 65520.0f);
      continue;
    }
    const double up = f16_to_f32(uint16_t(r + 1)), down = f16_to_f32(uint16_t(r - 1));
    const double e = std::fabs(double(x) - got);
    if ((r & 0x7fff) != 0x7bff) {
      ASSERT_LE(e, std::fabs(double(x) - up)) << x;
    }
    if ((r & 0x7fff) != 0) {
      ASSERT_LE(e, std::fabs(double(x) - down)) << x;
    }
  }
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);         // tie to even: 0
  EXPECT_EQ(f32_to_f16(next_up(std::ldexp(1.0f, -25))), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);         // 1.5 ulp: tie to even 2
}

// The branch-free row encoder gives f32_to_e4m3's code for every float in a sweep of the bit
// patterns (a prime stride over all 2^32, then every pattern of the fp8 range's exponents at a
// finer stride) and around every code and midpoint.
template <bool FNUZ>
void check_e4m3_rows() {
  auto same = [](uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f32_to_e4m3_rows<FNUZ>(f) == f32_to_e4m3<FNUZ>(f);
  };
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099)
    ASSERT_TRUE(same(uint32_t(b))) << b;
  for (uint32_t e = 100; e <= 140; ++e)
    for (uint32_t m = 0; m < (1u << 23); m += 509)
      for (uint32_t s : {0u, 0x80000000u}) ASSERT_TRUE(same(s | (e << 23) | m)) << e << " " << m;
  for (int c = 0; c < 256; ++c) {
    const float v = e4m3_to_f32<FNUZ>(uint8_t(c)), w = e4m3_to_f32<FNUZ>(uint8_t(c + 1 < 256 ? c + 1 : c));
    uint32_t bits;
    const float mid = (v + w) / 2;
    for (float x : {v, mid}) {
      std::memcpy(&bits, &x, 4);
      for (int d = -2; d <= 2; ++d) ASSERT_TRUE(same(bits + uint32_t(d))) << c << " " << d;
    }
  }
  for (uint32_t special : {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x00000001u, 0x80000000u, 0u})
    ASSERT_TRUE(same(special)) << special;
}

template <bool FNUZ>
void check_e4m3() {
  for (int c = 0; c < 256; ++c) {
    const float f = e4m3_to_f32<FNUZ>(uint8_t(c));
    if (gdnt::e4m3_is_nan(c, FNUZ)) {
      EXPECT_TRUE(std::isnan(f)) << c;
      continue;
    }
    EXPECT_EQ(double(f), gdnt::e4m3_value(c, FNUZ)) << c;
    if (FNUZ || c != 0x80) {
      ASSERT_EQ(f32_to_e4m3<FNUZ>(f), uint8_t(c)) << c;
    }
  }
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> e(-14.0, 10.0);
  for (int i = 0; i < 100000; ++i) {
    const float x = float(std::ldexp(1.0 + (rng() % 4096) / 4096.0, int(e(rng))) * ((rng() & 1) ? -1 : 1));
    ASSERT_EQ(double(e4m3_to_f32<FNUZ>(f32_to_e4m3<FNUZ>(x))), gdnt::e4m3_round_ref(x, FNUZ)) << x;
  }
  // Every midpoint between neighbouring codes goes to the even code.
  for (int c = 0; c < 126; ++c) {
    if (gdnt::e4m3_is_nan(c + 1, FNUZ)) break;
    const double lo = gdnt::e4m3_value(c, FNUZ), hi = gdnt::e4m3_value(c + 1, FNUZ);
    const float mid = float((lo + hi) / 2);
    ASSERT_EQ(int(f32_to_e4m3<FNUZ>(mid)), (c & 1) ? c + 1 : c) << mid;
  }
  const float fmax = FNUZ ? 240.0f : 448.0f;
  EXPECT_EQ(e4m3_to_f32<FNUZ>(f32_to_e4m3<FNUZ>(1e6f)), fmax);
  EXPECT_EQ(e4m3_to_f32<FNUZ>(f32_to_e4m3<FNUZ>(-1e6f)), -fmax);
  EXPECT_EQ(e4m3_to_f32<FNUZ>(f32_to_e4m3<FNUZ>(INFINITY)), fmax);
  EXPECT_TRUE(std::isnan(e4m3_to_f32<FNUZ>(f32_to_e4m3<FNUZ>(NAN))));
  EXPECT_EQ(f32_to_e4m3<FNUZ>(-0.0f), FNUZ ? 0x00 : 0x80);
  EXPECT_EQ(f32_to_e4m3<FNUZ>(-1e-30f), FNUZ ? 0x00 : 0x80);
}

TEST(Numeric, E4m3fnExhaustiveAndNearestEven) { check_e4m3<false>(); }
TEST(Numeric, E4m3fnuzExhaustiveAndNearestEven) { check_e4m3<true>(); }
TEST(Numeric, E4m3fnRowEncoderEqualsScalar) { check_e4m3_rows<false>(); }
TEST(Numeric, E4m3fnuzRowEncoderEqualsScalar) { check_e4m3_rows<true>(); }

TEST(Numeric, GateMath) {
  EXPECT_FLOAT_EQ(softplus(30.0f), 30.0f);
  EXPECT_NEAR(softplus(0.0f), std::log(2.0), 1e-7);
  EXPECT_NEAR(gate_g(0.5f, 0.3f, -0.2f), -std::exp(0.3) * std::log1p(std::exp(0.3)), 1e-6);
  EXPECT_NEAR(sigmoid(-2.0f), 1.0 / (1.0 + std::exp(2.0)), 1e-7);
}

}  // namespace
