// Version, status strings, contexts, layer configs and the versioned-struct rules.
#include "test_util.hpp"

using namespace gdnt;

namespace {

TEST(Api, Version) {
  int major = -1, minor = -1, patch = -1;
  gdn_version(&major, &minor, &patch);
  EXPECT_EQ(major, GDN_VERSION_MAJOR);
  EXPECT_EQ(minor, GDN_VERSION_MINOR);
  EXPECT_EQ(patch, GDN_VERSION_PATCH);
  const std::string want = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  EXPECT_EQ(want, gdn_version_string());
  gdn_version(nullptr, nullptr, nullptr);  // tolerated
}

TEST(Api, EveryStatusHasAString) {
  for (int s = GDN_SUCCESS; s <= GDN_ERROR_INTERNAL; ++s) {
    const std::string str = gdn_status_string(gdn_status(s));
    EXPECT_EQ(str.rfind("GDN_", 0), 0u) << s;
    EXPECT_EQ(str.find("UNKNOWN"), std::string::npos) << s;
  }
  EXPECT_NE(std::string(gdn_status_string(gdn_status(1000))).find("UNKNOWN"), std::string::npos);
}

TEST(Api, Dtypes) {
  EXPECT_EQ(gdn_dtype_size(GDN_DTYPE_F32), 4u);
  EXPECT_EQ(gdn_dtype_size(GDN_DTYPE_BF16), 2u);
  EXPECT_EQ(gdn_dtype_size(GDN_DTYPE_F8_E4M3FNUZ), 1u);
  EXPECT_EQ(gdn_dtype_size(GDN_DTYPE_I64), 8u);
  EXPECT_EQ(gdn_dtype_size(GDN_DTYPE_INVALID), 0u);
  EXPECT_STREQ(gdn_dtype_name(GDN_DTYPE_BF16), "bf16");
  EXPECT_STREQ(gdn_dtype_name(gdn_dtype(77)), "unknown");
}

TEST(Api, Contexts) {
  gdn_context_config c;
  gdn_context_config_init(&c);
  gdn_context ctx = nullptr;
  c.backend = GDN_BACKEND_CPU;
  c.num_threads = 3;
  ASSERT_EQ(gdn_context_create(&c, &ctx), GDN_SUCCESS);
  gdn_backend b;
  int32_t threads = 0;
  EXPECT_EQ(gdn_context_backend(ctx, &b), GDN_SUCCESS);
  EXPECT_EQ(b, GDN_BACKEND_CPU);
  EXPECT_EQ(gdn_context_num_threads(ctx, &threads), GDN_SUCCESS);
  EXPECT_EQ(threads, 3);
  EXPECT_EQ(gdn_context_destroy(ctx), GDN_SUCCESS);
  EXPECT_EQ(gdn_context_destroy(nullptr), GDN_SUCCESS);

  c.backend = GDN_BACKEND_AUTO;  // CPU when no GPU backend/device
  ASSERT_EQ(gdn_context_create(&c, &ctx), GDN_SUCCESS);
  EXPECT_EQ(gdn_context_backend(ctx, &b), GDN_SUCCESS);
  if (!gdn_backend_compiled(GDN_BACKEND_CUDA) && !gdn_backend_compiled(GDN_BACKEND_HIP)) {
    EXPECT_EQ(b, GDN_BACKEND_CPU);
  }
  gdn_context_destroy(ctx);

  for (gdn_backend gpu : {GDN_BACKEND_CUDA, GDN_BACKEND_HIP}) {
    if (gdn_backend_compiled(gpu)) continue;
    c.backend = gpu;
    ctx = reinterpret_cast<gdn_context>(0x1);
    EXPECT_EQ(gdn_context_create(&c, &ctx), GDN_ERROR_BACKEND_UNAVAILABLE);
    EXPECT_EQ(ctx, reinterpret_cast<gdn_context>(0x1)) << "out written on failure";
    EXPECT_NE(std::string(gdn_last_error_message()), "");
  }
  c.backend = 42;
  EXPECT_EQ(gdn_context_create(&c, &ctx), GDN_ERROR_INVALID_ARGUMENT);
  c.backend = GDN_BACKEND_CPU;
  c.num_threads = -1;
  EXPECT_EQ(gdn_context_create(&c, &ctx), GDN_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(gdn_context_create(nullptr, &ctx), GDN_ERROR_NULL_POINTER);
  c.num_threads = 0;
  EXPECT_EQ(gdn_context_create(&c, nullptr), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_context_backend(nullptr, &b), GDN_ERROR_NULL_POINTER);
}

TEST(Api, LayerConfigValidation) {
  Ctx ctx;
  struct Case {
    const char* name;
    void (*mutate)(gdn_layer_config&);
    gdn_status want;
  };
  const Case cases[] = {
      {"hk 0", [](gdn_layer_config& c) { c.num_k_heads = 0; }, GDN_ERROR_INVALID_ARGUMENT},
      {"hv not multiple", [](gdn_layer_config& c) { c.num_v_heads = 24; c.num_k_heads = 16; }, GDN_ERROR_INVALID_ARGUMENT},
      {"k too big", [](gdn_layer_config& c) { c.head_k_dim = 4096; }, GDN_ERROR_INVALID_ARGUMENT},
      {"v negative", [](gdn_layer_config& c) { c.head_v_dim = -1; }, GDN_ERROR_INVALID_ARGUMENT},
      {"conv width 9", [](gdn_layer_config& c) { c.conv_width = 9; }, GDN_ERROR_INVALID_ARGUMENT},
      {"activation", [](gdn_layer_config& c) { c.conv_activation = 5; }, GDN_ERROR_INVALID_ARGUMENT},
      {"act dtype fp8", [](gdn_layer_config& c) { c.act_dtype = GDN_DTYPE_F8_E4M3FN; }, GDN_ERROR_BAD_DTYPE},
      {"state f16", [](gdn_layer_config& c) { c.state_dtype = GDN_DTYPE_F16; }, GDN_ERROR_BAD_DTYPE},
      {"fp8 dtype bf16", [](gdn_layer_config& c) { c.fp8_dtype = GDN_DTYPE_BF16; }, GDN_ERROR_BAD_DTYPE},
      {"group 100", [](gdn_layer_config& c) { c.fp8_group_size = 100; }, GDN_ERROR_INVALID_ARGUMENT},
      {"group 0", [](gdn_layer_config& c) { c.fp8_group_size = 0; }, GDN_ERROR_INVALID_ARGUMENT},
      {"layout", [](gdn_layer_config& c) { c.input_layout = 7; }, GDN_ERROR_INVALID_ARGUMENT},
      {"precision", [](gdn_layer_config& c) { c.prefill_precision = 2; }, GDN_ERROR_INVALID_ARGUMENT},
      {"scale nan", [](gdn_layer_config& c) { c.scale = NAN; }, GDN_ERROR_INVALID_ARGUMENT},
      {"eps negative", [](gdn_layer_config& c) { c.norm_eps = -1; }, GDN_ERROR_INVALID_ARGUMENT},
      {"struct_size 0", [](gdn_layer_config& c) { c.struct_size = 0; }, GDN_ERROR_BAD_VERSION},
  };
  for (const Case& k : cases) {
    gdn_layer_config c;
    gdn_layer_config_init(&c);
    k.mutate(c);
    gdn_layer layer = reinterpret_cast<gdn_layer>(0x2);
    EXPECT_EQ(gdn_layer_create(ctx.ctx, &c, &layer), k.want) << k.name << ": " << gdn_last_error_message();
    EXPECT_EQ(layer, reinterpret_cast<gdn_layer>(0x2)) << k.name;
  }
  gdn_layer_config c;
  gdn_layer_config_init(&c);
  gdn_layer layer = nullptr;
  EXPECT_EQ(gdn_layer_create(nullptr, &c, &layer), GDN_ERROR_NULL_POINTER);
  EXPECT_EQ(gdn_layer_create(ctx.ctx, nullptr, &layer), GDN_ERROR_NULL_POINTER);
  ASSERT_EQ(gdn_layer_create(ctx.ctx, &c, &layer), GDN_SUCCESS);
  int64_t conv_dim = 0;
  EXPECT_EQ(gdn_layer_conv_dim(layer, &conv_dim), GDN_SUCCESS);
  EXPECT_EQ(conv_dim, 2 * 16 * 128 + 32 * 128);
  EXPECT_EQ(gdn_layer_destroy(layer), GDN_SUCCESS);
  EXPECT_EQ(gdn_layer_destroy(nullptr), GDN_SUCCESS);
}

// A caller compiled against a newer header passes a larger struct: accepted when the unknown
// tail is zero, refused (not silently ignored) when it is set.
TEST(Api, VersionedStructs) {
  Ctx ctx;
  struct Bigger {
    gdn_layer_config base;
    int64_t future;
  } big;
  std::memset(&big, 0, sizeof big);
  gdn_layer_config_init(&big.base);
  big.base.struct_size = sizeof big;
  gdn_layer layer = nullptr;
  EXPECT_EQ(gdn_layer_create(ctx.ctx, &big.base, &layer), GDN_SUCCESS) << gdn_last_error_message();
  gdn_layer_destroy(layer);
  big.future = 1;
  layer = nullptr;
  EXPECT_EQ(gdn_layer_create(ctx.ctx, &big.base, &layer), GDN_ERROR_BAD_VERSION);
  EXPECT_EQ(layer, nullptr);
  EXPECT_NE(std::string(gdn_last_error_message()).find("unknown"), std::string::npos);
}

TEST(Api, LastErrorIsThreadLocal) {
  Ctx ctx;
  EXPECT_EQ(gdn_layer_create(ctx.ctx, nullptr, nullptr), GDN_ERROR_NULL_POINTER);
  std::string other;
  std::thread([&] { other = gdn_last_error_message(); }).join();
  EXPECT_EQ(other, "");
  EXPECT_NE(std::string(gdn_last_error_message()), "");
}

}  // namespace
