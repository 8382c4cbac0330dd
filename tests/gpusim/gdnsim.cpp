// gpusim runtime: device memory, streams and graphs on the host, and the block scheduler that runs
// the GPU kernels' threads as coroutines (see cuda_runtime.h).
#include "cuda_runtime.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define GDNSIM_ASAN 1
#else
#define GDNSIM_ASAN 0
#endif

namespace gdnsim {
namespace {

[[noreturn]] void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "gpusim: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::fflush(stderr);
  std::abort();
}

// The kernel's name: from the dynamic symbols, else (kernels are hidden symbols of libgdn) from
// the library's full symbol table through addr2line when `full`.
std::string kernel_name(const void* f, bool full = true) {
  Dl_info info;
  if (dladdr(f, &info) && info.dli_sname) return info.dli_sname;
  char buf[640];
  if (full && info.dli_fname) {
    std::snprintf(buf, sizeof buf, "addr2line -f -C -e '%s' 0x%zx 2>/dev/null", info.dli_fname,
                  size_t(static_cast<const char*>(f) - static_cast<const char*>(info.dli_fbase)));
    if (FILE* pipe = popen(buf, "r")) {
      std::string name;
      if (std::fgets(buf, sizeof buf, pipe)) name = buf;
      pclose(pipe);
      while (!name.empty() && name.back() == '\n') name.pop_back();
      if (!name.empty() && name != "??") return name;
    }
  }
  std::snprintf(buf, sizeof buf, "kernel@%p", f);
  return buf;
}

long env_long(const char* name, long dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : dflt;
}

// ---- device model: an H100-like device (sm_90, 227 KB of opt-in shared memory), or with
// GDN_SIM_HIP an MI300X-like one (304 CUs, 64 KB of LDS a block, no opt-in). GDN_SIM_SMS sets the
// SM count, which the kernels' persistent grids size themselves by.
#if defined(GDN_SIM_HIP)
constexpr size_t kSmemOptin = 65536, kSmemDefault = 65536, kSmemPerSM = 65536;
constexpr int kSMs = 304, kMajor = 9, kMinor = 4, kWarp = 64;
const char* const kDeviceName = "MI300X-like";
#else
constexpr size_t kSmemOptin = 232448, kSmemDefault = 49152, kSmemPerSM = 233472;
constexpr int kSMs = 132, kMajor = 9, kMinor = 0, kWarp = 32;
const char* const kDeviceName = "H100-like";
#endif
int sim_sms() { return int(std::max(1L, env_long("GDN_SIM_SMS", kSMs))); }

std::mutex g_mu;  // everything below
std::atomic<int> g_last_error{cudaSuccess};
std::set<void*> g_allocs;
std::map<const void*, int> g_max_smem;
int g_capturing = 0;  // streams capturing (global mode: no sync / alloc / copy meanwhile)
bool g_capture_invalid = false;
uint64_t g_launch_seq = 0;

// GDN_SIM_STATS=1: at exit, every kernel that ran and how many blocks of it (coverage).
struct Stats {
  std::map<const void*, std::pair<uint64_t, uint64_t>> launches;  // kernel -> (launches, blocks)
  ~Stats() {
    if (env_long("GDN_SIM_STATS", 0) == 0) return;
    std::fprintf(stderr, "gpusim: kernels run (launches, blocks):\n");
    for (auto& [f, n] : launches)
      std::fprintf(stderr, "  %8llu %10llu  %s\n", (unsigned long long)n.first, (unsigned long long)n.second,
                   kernel_name(f).c_str());
  }
};
Stats g_stats;

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}
// Operations a stream capture forbids.
cudaError_t capture_guard() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_capturing > 0) {
    g_capture_invalid = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}

// ---- coroutines
constexpr size_t kStack = 256 * 1024, kGuard = 4096;
constexpr unsigned kGatherWords = 8;

enum class State { Ready, WaitWarp, WaitBlock, WaitCluster, WaitNamed, Done };

struct Cluster;

struct AsyncCopy {
  void* dst;
  unsigned size;  // 4, 8 or 16
  unsigned char bytes[16];
  uint64_t group;  // commit group (the thread's group counter when issued)
};

struct SimThread {
  Thread t;
  std::vector<AsyncCopy> pending;  // cp.async copies not yet landed
  uint64_t groups = 0;             // commit groups closed so far
  ucontext_t ctx;
  State state = State::Ready;
  unsigned named = 0;  // the named barrier it waits at (State::WaitNamed)
  uint32_t exchanges = 0, gathers = 0;
  void* stack = nullptr;
};

struct Block {
  const Launch* l = nullptr;
  std::vector<SimThread> th;
  std::vector<uint32_t> slots;   // [warps][2][32] exchange slots
  std::vector<uint32_t> gather;  // [warps][2][32][kGatherWords], on first use
  unsigned char* dyn = nullptr;
  void* anchor = nullptr;
  Cluster* cluster = nullptr;
  unsigned rank = 0;
  unsigned arrived[16] = {};  // named barriers (bar.sync / bar.arrive id, count): arrivals so far
  unsigned expected[16] = {}; // ... and the count of the current phase (0: none yet)
};

struct Cluster {
  std::vector<Block*> blocks;
  std::mutex mu;
  std::condition_variable cv;
  unsigned arrived = 0, generation = 0;
  void barrier() {
    std::unique_lock<std::mutex> lk(mu);
    const unsigned gen = generation;
    if (++arrived == blocks.size()) {
      arrived = 0, ++generation;
      cv.notify_all();
    } else {
      cv.wait(lk, [&] { return generation != gen; });
    }
  }
};

// Per host thread: stacks for up to 1024 GPU threads (mapped once, lazily committed), the dynamic
// shared memory buffer, the scheduler context and the thread running now.
struct HostThreadState {
  unsigned char* stacks = nullptr;
  std::vector<unsigned char> dyn;
  ucontext_t sched;
  Block* block = nullptr;
  SimThread* cur = nullptr;
#if GDNSIM_ASAN
  void* fake_stack = nullptr;
  const void* host_stack_bottom = nullptr;
  size_t host_stack_size = 0;
#endif
  HostThreadState() {
    const size_t per = kStack + kGuard;
    void* p = mmap(nullptr, per * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fatal("cannot map coroutine stacks");
    stacks = static_cast<unsigned char*>(p);
  }
  // Stacks 0 .. n-1 get their overflow guard page (on first use: a host thread maps 1024).
  void guard(unsigned n) {
    for (; guarded < n; ++guarded) mprotect(stacks + size_t(guarded) * (kStack + kGuard), kGuard, PROT_NONE);
  }
  unsigned guarded = 0;
  ~HostThreadState() { munmap(stacks, (kStack + kGuard) * 1024); }
};
thread_local HostThreadState* tl_host = nullptr;
HostThreadState& host() {
  static thread_local std::unique_ptr<HostThreadState> h;
  if (!h) h.reset(new HostThreadState), tl_host = h.get();
  return *h;
}

void entry() {
  HostThreadState& h = *tl_host;
#if GDNSIM_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &h.host_stack_bottom, &h.host_stack_size);
#endif
  h.block->l->body();
  for (const AsyncCopy& c : h.cur->pending) std::memcpy(c.dst, c.bytes, 16);  // copies still land
  h.cur->pending.clear();
  h.cur->state = State::Done;
#if GDNSIM_ASAN
  __sanitizer_start_switch_fiber(nullptr, h.host_stack_bottom, h.host_stack_size);
#endif
  // returns to uc_link = the scheduler
}

void switch_to(HostThreadState& h, SimThread& t) {
  h.cur = &t;
#if GDNSIM_ASAN
  __sanitizer_start_switch_fiber(&h.fake_stack, t.stack, kStack);
#endif
  swapcontext(&h.sched, &t.ctx);
#if GDNSIM_ASAN
  __sanitizer_finish_switch_fiber(h.fake_stack, nullptr, nullptr);
#endif
  h.cur = nullptr;
}

// From a GPU thread back to the scheduler.
void yield(State s) {
  HostThreadState& h = *tl_host;
  SimThread& t = *h.cur;
  t.state = s;
#if GDNSIM_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, h.host_stack_bottom, h.host_stack_size);
#endif
  swapcontext(&t.ctx, &h.sched);
#if GDNSIM_ASAN
  __sanitizer_finish_switch_fiber(fake, &h.host_stack_bottom, &h.host_stack_size);
#endif
}

// Out of line: getcontext returns twice, which would put the caller's locals at risk.
__attribute__((noinline)) void init_context(SimThread& t, ucontext_t* link) {
  getcontext(&t.ctx);
  t.ctx.uc_stack.ss_sp = t.stack;
  t.ctx.uc_stack.ss_size = kStack;
  t.ctx.uc_link = link;
  makecontext(&t.ctx, entry, 0);
}

const char* state_name(State s) {
  switch (s) {
    case State::Ready: return "running";
    case State::WaitWarp: return "at a shuffle/__syncwarp";
    case State::WaitBlock: return "at __syncthreads";
    case State::WaitCluster: return "at a cluster barrier";
    case State::WaitNamed: return "at a named barrier";
    case State::Done: return "exited";
  }
  return "?";
}

// Runs one block to completion on this host thread.
void run_block(const Launch& l, dim3 bid, Cluster* cluster, unsigned rank, uint64_t seed) {
  HostThreadState& h = host();
  Block b;
  b.l = &l;
  b.cluster = cluster, b.rank = rank;
  b.anchor = l.tls_anchor();
  const unsigned n = l.block.x * l.block.y * l.block.z, warps = (n + 31) / 32;
  b.slots.assign(size_t(warps) * 64, 0xffffffffu);
  if (h.dyn.size() < l.smem + 16) h.dyn.resize(l.smem + 16);
  b.dyn = h.dyn.data() + (16 - reinterpret_cast<uintptr_t>(h.dyn.data()) % 16) % 16;
  std::memset(b.dyn, 0xff, l.smem);
  if (cluster) cluster->blocks[rank] = &b;
  b.th.resize(n);
  h.guard(n);
  for (unsigned i = 0; i < n; ++i) {
    SimThread& t = b.th[i];
    t.t.tid = dim3(i % l.block.x, (i / l.block.x) % l.block.y, i / (l.block.x * l.block.y));
    t.t.bid = bid, t.t.bdim = l.block, t.t.gdim = l.grid;
    t.t.linear = i, t.t.lane = i % 32, t.t.warp = i / 32;
    t.stack = h.stacks + size_t(i) * (kStack + kGuard) + kGuard;
    init_context(t, &h.sched);
  }
  h.block = &b;
  if (cluster) cluster->barrier();  // every block of the cluster registered before any runs
  uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
  std::vector<unsigned> order(32);
  auto describe = [&](const char* what) {
    std::string s;
    for (unsigned i = 0; i < n && s.size() < 600; ++i)
      if (i == 0 || b.th[i].state != b.th[i - 1].state)
        s += "  thread " + std::to_string(i) + ".. " + state_name(b.th[i].state) + "\n";
    fatal("%s in %s, block (%u, %u, %u):\n%s", what, kernel_name(l.func).c_str(), bid.x, bid.y, bid.z, s.c_str());
  };
  std::vector<unsigned> worder(warps);
  for (unsigned w = 0; w < warps; ++w) worder[w] = w;
  auto shuffle = [&](std::vector<unsigned>& v, size_t len) {
    for (size_t i = len; i > 1; --i) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      std::swap(v[i - 1], v[rng % i]);
    }
  };
  for (;;) {
    // One phase (up to the next block or cluster barrier): the subgroups of 32 lanes in a random
    // order, each run as far as it gets -- through its shuffles and __syncwarp -- before the next
    // starts, so a subgroup never sees another's writes of the same phase unless a barrier
    // orders them. Lanes within a subgroup run in a random order between its barriers.
    shuffle(worder, warps);
    for (unsigned w : worder) {
      const unsigned lo = w * 32, hi = std::min(n, lo + 32);
      for (;;) {
        for (unsigned i = lo; i < hi; ++i) order[i - lo] = i;
        shuffle(order, hi - lo);
        // Until no lane is ready (the lane that completes a named barrier releases lanes the
        // pass may have visited already).
        for (bool ran = true; ran;) {
          ran = false;
          for (unsigned j = 0; j < hi - lo; ++j)
            if (b.th[order[j]].state == State::Ready) switch_to(h, b.th[order[j]]), ran = true;
        }
        unsigned waiting = 0, done = 0;
        for (unsigned i = lo; i < hi; ++i) {
          waiting += b.th[i].state == State::WaitWarp;
          done += b.th[i].state == State::Done;
        }
        if (waiting == 0) break;
        if (waiting != hi - lo)
          describe(done ? "a shuffle or __syncwarp with lanes that have exited" : "a subgroup's lanes diverged at a barrier");
        for (unsigned i = lo; i < hi; ++i) b.th[i].state = State::Ready;
      }
    }
    unsigned live = 0, at_block = 0, at_cluster = 0, at_named = 0, ready = 0;
    for (const SimThread& t : b.th) {
      live += t.state != State::Done;
      at_block += t.state == State::WaitBlock;
      at_cluster += t.state == State::WaitCluster;
      at_named += t.state == State::WaitNamed;
      ready += t.state == State::Ready;
    }
    if (live == 0) break;
    if (ready) continue;  // released by a named barrier this round: run on before any block barrier
    if (at_named) describe("a named barrier that never completes (threads wait at it and at other barriers)");
    if (at_block && at_cluster) describe("threads wait at __syncthreads and at a cluster barrier at once");
    if (at_cluster) {
      if (at_cluster != n) describe("a cluster barrier with threads that have exited");
      cluster->barrier();
    }
    for (SimThread& t : b.th)
      if (t.state == State::WaitBlock || t.state == State::WaitCluster) t.state = State::Ready;
  }
  if (cluster) cluster->barrier();  // peers may read this block's shared memory until they exit
  h.block = nullptr;
}

// ---- launches
void run_grid(const Launch& l, uint64_t seq) {
  const uint64_t blocks = uint64_t(l.grid.x) * l.grid.y * l.grid.z;
  auto bid_of = [&](uint64_t i) {
    return dim3(unsigned(i % l.grid.x), unsigned((i / l.grid.x) % l.grid.y), unsigned(i / (uint64_t(l.grid.x) * l.grid.y)));
  };
  const uint64_t seed = uint64_t(env_long("GDN_SIM_SEED", 1)) ^ (seq << 20);
  const unsigned cs = l.cluster.x;
  if (cs > 1) {  // a cluster's blocks run at once, each on its own host thread
    for (uint64_t c0 = 0; c0 < blocks; c0 += cs) {
      Cluster cl;
      cl.blocks.assign(cs, nullptr);
      std::vector<std::thread> ts;
      for (unsigned r = 0; r < cs; ++r)
        ts.emplace_back([&, r] { run_block(l, bid_of(c0 + r), &cl, r, seed + c0 + r); });
      for (std::thread& t : ts) t.join();
    }
    return;
  }
  const unsigned workers = unsigned(std::min<uint64_t>(blocks, uint64_t(std::max(1L, env_long("GDN_SIM_THREADS",
                                                                         long(std::thread::hardware_concurrency()))))));
  std::atomic<uint64_t> next{0};
  auto work = [&] {
    for (uint64_t i; (i = next.fetch_add(1)) < blocks;) run_block(l, bid_of(i), nullptr, 0, seed + i);
  };
  if (workers <= 1) return work();
  std::vector<std::thread> ts;
  for (unsigned w = 1; w < workers; ++w) ts.emplace_back(work);
  work();
  for (std::thread& t : ts) t.join();
}

cudaError_t check_launch(const Launch& l) {
  const uint64_t threads = uint64_t(l.block.x) * l.block.y * l.block.z;
  if (threads == 0 || threads > 1024 || l.block.z > 64) return cudaErrorInvalidConfiguration;
  if (l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 || l.grid.x > 0x7fffffffu || l.grid.y > 65535 || l.grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  int max_dyn = int(kSmemDefault);
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_max_smem.find(l.func);
    if (it != g_max_smem.end()) max_dyn = it->second;
  }
  if (l.smem > size_t(max_dyn)) return cudaErrorInvalidValue;
  if (l.cluster.y != 1 || l.cluster.z != 1 || l.cluster.x == 0 || l.cluster.x > 8 || l.grid.x % l.cluster.x != 0)
    return cudaErrorInvalidConfiguration;
  return cudaSuccess;
}

}  // namespace

// ---- the device side
Thread* gdnsim_current() {
  HostThreadState* h = tl_host;
  if (!h || !h->cur) fatal("threadIdx / blockIdx read outside a kernel");
  return &h->cur->t;
}
void gdnsim_sync_block() { yield(State::WaitBlock); }
void gdnsim_named_barrier(unsigned id, unsigned count, int wait) {
  HostThreadState& h = *tl_host;
  Block& b = *h.block;
  if (id >= 16 || count == 0 || count % 32 != 0 || count > b.th.size())
    fatal("named barrier %u with a count of %u threads (block of %zu)", id, count, b.th.size());
  if (b.arrived[id] == 0) b.expected[id] = count;
  if (b.expected[id] != count) fatal("named barrier %u: counts %u and %u in one phase", id, b.expected[id], count);
  if (++b.arrived[id] == count) {  // the phase completes: its waiters run on
    b.arrived[id] = 0;
    for (SimThread& t : b.th)
      if (t.state == State::WaitNamed && t.named == id) t.state = State::Ready;
    return;
  }
  if (wait) {
    h.cur->named = id;
    yield(State::WaitNamed);
  }
}
void gdnsim_sync_warp() { yield(State::WaitWarp); }
void gdnsim_sync_cluster() {
  if (!tl_host->block->cluster) fatal("cluster barrier in a kernel launched without clusters");
  yield(State::WaitCluster);
}
uint32_t gdnsim_exchange(uint32_t bits, unsigned src) {
  HostThreadState& h = *tl_host;
  Block& b = *h.block;
  SimThread& t = *h.cur;
  const unsigned n = unsigned(b.th.size()), base = t.t.warp * 32;
  if (src >= 32 || base + src >= n) fatal("shuffle from lane %u, which does not exist (block of %u threads)", src, n);
  uint32_t* slot = &b.slots[size_t(t.t.warp) * 64 + (t.exchanges & 1) * 32];
  ++t.exchanges;
  slot[t.t.lane] = bits;
  yield(State::WaitWarp);
  return slot[src];
}
void gdnsim_warp_gather(const uint32_t* mine, unsigned words, uint32_t* all) {
  HostThreadState& h = *tl_host;
  Block& b = *h.block;
  SimThread& t = *h.cur;
  if (words > kGatherWords) fatal("warp gather of %u words (at most %u)", words, kGatherWords);
  if (b.gather.empty()) b.gather.assign(size_t((b.th.size() + 31) / 32) * 2 * 32 * kGatherWords, 0);
  uint32_t* slot = &b.gather[(size_t(t.t.warp) * 2 + (t.gathers & 1)) * 32 * kGatherWords];
  ++t.gathers;
  std::memcpy(slot + t.t.lane * kGatherWords, mine, words * 4);
  yield(State::WaitWarp);
  for (unsigned l = 0; l < 32; ++l) std::memcpy(all + l * words, slot + l * kGatherWords, words * 4);
}
void gdnsim_async_copy(void* dst, const void* src, unsigned size) {
  if (size != 4 && size != 8 && size != 16) fatal("async copy of %u bytes (4, 8 or 16)", size);
  if (reinterpret_cast<uintptr_t>(dst) % size != 0 || reinterpret_cast<uintptr_t>(src) % size != 0)
    fatal("async copy of %u bytes from or to an address not aligned to it", size);
  SimThread& t = *tl_host->cur;
  AsyncCopy c;
  c.dst = dst;
  c.size = size;
  std::memcpy(c.bytes, src, size);
  c.group = t.groups;  // the group the next commit closes
  t.pending.push_back(c);
}
void gdnsim_async_commit() { ++tl_host->cur->groups; }
void gdnsim_async_wait(int newest_pending) {
  SimThread& t = *tl_host->cur;
  // Groups 0 .. groups - 1 are committed; all but the newest `newest_pending` of them complete.
  const uint64_t done_below = t.groups > uint64_t(newest_pending) ? t.groups - uint64_t(newest_pending) : 0;
  size_t keep = 0;
  for (size_t i = 0; i < t.pending.size(); ++i) {
    if (t.pending[i].group < done_below)
      std::memcpy(t.pending[i].dst, t.pending[i].bytes, t.pending[i].size);
    else
      t.pending[keep++] = t.pending[i];
  }
  t.pending.resize(keep);
}
void* gdnsim_dynamic_smem() { return tl_host->block->dyn; }
const void* gdnsim_cluster_peer(const void* p, unsigned rank) {
  Block& b = *tl_host->block;
  if (!b.cluster) return p;
  if (rank >= b.cluster->blocks.size()) fatal("cluster rank %u out of a cluster of %zu", rank, b.cluster->blocks.size());
  Block& peer = *b.cluster->blocks[rank];
  const unsigned char* c = static_cast<const unsigned char*>(p);
  if (c >= b.dyn && c < b.dyn + b.l->smem) return peer.dyn + (c - b.dyn);
  return static_cast<const unsigned char*>(peer.anchor) + (c - static_cast<const unsigned char*>(b.anchor));
}

cudaError_t gdnsim_set_max_dynamic_smem(const void* func, int bytes) {
  if (bytes < 0 || size_t(bytes) > kSmemOptin) return set_error(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lk(g_mu);
  g_max_smem[func] = bytes;
  return cudaSuccess;
}
cudaError_t gdnsim_occupancy(int* blocks, const void*, int threads, size_t smem) {
  if (!blocks || threads <= 0 || threads > 1024) return set_error(cudaErrorInvalidValue);
  int n = std::min(32, 2048 / threads);
  if (smem > 0) n = std::min(n, int(kSmemPerSM / (smem + 1024)));
  *blocks = n;
  return cudaSuccess;
}

}  // namespace gdnsim

// ---- streams and graphs
struct gdnsim_stream {
  bool capturing = false;
  gdnsim_graph* graph = nullptr;
};
struct gdnsim_graph {
  std::vector<gdnsim::Launch> nodes;
};

namespace gdnsim {
cudaError_t gdnsim_launch(Launch* l, cudaStream_t stream) {
  const cudaError_t e = check_launch(*l);
  if (e != cudaSuccess) {
    std::fprintf(stderr, "gpusim: launch of %s refused (grid %u x %u x %u, block %u x %u x %u, %zu bytes of dynamic shared memory)\n",
                 kernel_name(l->func).c_str(), l->grid.x, l->grid.y, l->grid.z, l->block.x, l->block.y, l->block.z, l->smem);
    return set_error(e);
  }
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (stream && stream->capturing) {
      stream->graph->nodes.push_back(*l);
      return cudaSuccess;
    }
    if (g_capturing > 0) {  // the legacy stream (or another) while a global capture runs
      g_capture_invalid = true;
      return set_error(cudaErrorStreamCaptureUnsupported);
    }
    seq = ++g_launch_seq;
    auto& st = g_stats.launches[l->func];
    ++st.first;
    st.second += uint64_t(l->grid.x) * l->grid.y * l->grid.z;
  }
  run_grid(*l, seq);
  return cudaSuccess;
}
}  // namespace gdnsim

using gdnsim::capture_guard;
using gdnsim::set_error;

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError() { return cudaError_t(gdnsim::g_last_error.exchange(cudaSuccess)); }
cudaError_t cudaPeekAtLastError() { return cudaError_t(gdnsim::g_last_error.load()); }
cudaError_t cudaGetDeviceCount(int* n) {
  if (!n) return set_error(cudaErrorInvalidValue);
  *n = 1;
  return cudaSuccess;
}
namespace {
thread_local int tl_device = 0;
}
cudaError_t cudaGetDevice(int* d) {
  if (!d) return set_error(cudaErrorInvalidValue);
  *d = tl_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d != 0) return set_error(cudaErrorInvalidDevice);
  tl_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (!p) return set_error(cudaErrorInvalidValue);
  if (d != 0) return set_error(cudaErrorInvalidDevice);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "gpusim (%s, %d SMs)", gdnsim::kDeviceName, gdnsim::sim_sms());
  p->multiProcessorCount = gdnsim::sim_sms();
  p->sharedMemPerBlock = gdnsim::kSmemDefault;
  p->sharedMemPerBlockOptin = gdnsim::kSmemOptin;
  p->major = gdnsim::kMajor, p->minor = gdnsim::kMinor, p->warpSize = gdnsim::kWarp;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t n) {
  if (!p) return set_error(cudaErrorInvalidValue);
  if (cudaError_t e = capture_guard()) return set_error(e);
  // Exactly n bytes (256-byte aligned): under AddressSanitizer a read past the end is reported.
  if (posix_memalign(p, 256, std::max<size_t>(n, 1)) != 0) return set_error(cudaErrorMemoryAllocation);
  std::memset(*p, 0xff, n);
  std::lock_guard<std::mutex> lk(gdnsim::g_mu);
  gdnsim::g_allocs.insert(*p);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = capture_guard()) return set_error(e);
  std::lock_guard<std::mutex> lk(gdnsim::g_mu);
  if (!gdnsim::g_allocs.erase(p)) return set_error(cudaErrorInvalidValue);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind) {
  if (cudaError_t e = capture_guard()) return set_error(e);
  if (n && (!dst || !src)) return set_error(cudaErrorInvalidValue);
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int v, size_t n) {
  if (cudaError_t e = capture_guard()) return set_error(e);
  if (n && !dst) return set_error(cudaErrorInvalidValue);
  if (n) std::memset(dst, v, n);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return set_error(capture_guard()); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  if (!s) return set_error(cudaErrorInvalidValue);
  *s = new gdnsim_stream;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s && s->capturing) return set_error(cudaErrorStreamCaptureUnsupported);
  return set_error(capture_guard());
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s || s->capturing) return set_error(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lk(gdnsim::g_mu);
  s->capturing = true;
  s->graph = new gdnsim_graph;
  if (gdnsim::g_capturing++ == 0) gdnsim::g_capture_invalid = false;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s || !s->capturing || !g) return set_error(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lk(gdnsim::g_mu);
  s->capturing = false;
  --gdnsim::g_capturing;
  if (gdnsim::g_capture_invalid) {
    delete s->graph;
    *g = nullptr;
    return set_error(cudaErrorStreamCaptureInvalidated);
  }
  *g = s->graph;
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* n) {
  if (!g || !n) return set_error(cudaErrorInvalidValue);
  if (nodes)
    for (size_t i = 0; i < std::min(*n, g->nodes.size()); ++i) nodes[i] = &g->nodes[i];
  *n = g->nodes.size();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  if (!e || !g) return set_error(cudaErrorInvalidValue);
  *e = new gdnsim_graph(*g);
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (!e) return set_error(cudaErrorInvalidValue);
  if (s && s->capturing) return set_error(cudaErrorStreamCaptureUnsupported);
  for (gdnsim::Launch& l : e->nodes)
    if (cudaError_t r = gdnsim::gdnsim_launch(&l, nullptr)) return r;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
