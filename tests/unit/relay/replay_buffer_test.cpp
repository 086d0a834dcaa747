#include "relay/replay_buffer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "relay/buffer_cache.hpp"
#include "relay/relay_counters.hpp"

namespace smtplb::relay {
namespace {

std::string read_all(const ReplayBuffer& b, std::size_t chunk) {
  std::string all, part;
  for (std::uint64_t off = 0; off < b.size(); off += part.size()) {
    EXPECT_TRUE(b.read(off, chunk, part));
    if (part.empty()) break;
    all += part;
  }
  return all;
}

TEST(ReplayBuffer, SmallMessagesStayInMemory) {
  ReplayBuffer b(1024, "/tmp");
  ASSERT_TRUE(b.append("hello "));
  ASSERT_TRUE(b.append("world\r\n"));
  EXPECT_FALSE(b.spilled());
  EXPECT_EQ(read_all(b, 4), "hello world\r\n");
}

TEST(ReplayBuffer, LargeMessagesSpillToAnUnlinkedFileAndReadBackExactly) {
  ReplayBuffer b(100, "/tmp");
  std::string expect;
  for (int i = 0; i < 1000; ++i) {
    std::string line = "line " + std::to_string(i) + std::string(i % 50, 'x') + "\r\n";
    ASSERT_TRUE(b.append(line));
    expect += line;
  }
  EXPECT_TRUE(b.spilled());
  EXPECT_EQ(b.size(), expect.size());
  EXPECT_EQ(read_all(b, 77), expect);  // chunks straddle the memory/file boundary
  b.clear();
  EXPECT_EQ(b.size(), 0u);
}

TEST(ReplayBuffer, UnwritableDirectoryFailsInsteadOfLosingBytes) {
  ReplayBuffer b(4, "/nonexistent-dir");
  EXPECT_TRUE(b.append("abcd"));
  EXPECT_FALSE(b.append("efgh"));
  EXPECT_FALSE(b.append("ijkl"));  // stays failed
}

// Issue 14: a spill that fails is counted (smtplb_spill_failures_total),
// once per message, not once per chunk.
TEST(ReplayBuffer, EachFailedSpillIsCountedOnce) {
  const std::uint64_t before = counters().spill_failures.load();
  for (int i = 0; i < 3; ++i) {
    ReplayBuffer b(4, "/nonexistent-dir");
    ASSERT_TRUE(b.append("abcd"));
    ASSERT_FALSE(b.append("efgh"));
    ASSERT_FALSE(b.append("ijkl"));
  }
  EXPECT_EQ(counters().spill_failures.load() - before, 3u);
  ReplayBuffer fits(1024, "/nonexistent-dir");
  EXPECT_TRUE(fits.append("in memory: no spill, no failure"));
  EXPECT_EQ(counters().spill_failures.load() - before, 3u);
}

TEST(ReplayBuffer, ProbeDirectorySaysWhySpillFilesCannotBeMade) {
  struct Case {
    const char* dir;
    const char* why;  // empty: usable
  };
  const Case cases[] = {
      {"/tmp", ""},
      {"/nonexistent-dir", "No such file or directory"},
      {"/dev/null", "not a directory"},
  };
  for (const Case& c : cases) {
    std::string why = ReplayBuffer::probe_directory(c.dir);
    if (*c.why == '\0')
      EXPECT_EQ(why, "") << c.dir;
    else
      EXPECT_NE(why.find(c.why), std::string::npos) << c.dir << ": " << why;
  }
}

TEST(ReplayBuffer, SpillsLargeAppendsInBoundedPiecesExactly) {
  // One append several pieces long goes out whole and reads back exactly.
  ReplayBuffer b(10, "/tmp");
  std::string big;
  for (std::size_t i = 0; big.size() < 3 * ReplayBuffer::kSpillPiece + 123; ++i)
    big += std::to_string(i) + ",";
  ASSERT_TRUE(b.append(big));
  EXPECT_TRUE(b.spilled());
  EXPECT_EQ(read_all(b, 4096), big);
}

}  // namespace
TEST(ReplayBuffer, TheNextMessageReusesTheMemoryOfTheLast) {
  std::size_t grown = 0;
  {
    ReplayBuffer first(1 << 20, "/tmp");
    ASSERT_TRUE(first.append(std::string(100 * 1024, 'x')));
    grown = first.memory_capacity();
  }
  ReplayBuffer next(1 << 20, "/tmp");
  ASSERT_TRUE(next.append("a"));
  EXPECT_GE(next.memory_capacity(), grown);
  std::string out;
  ASSERT_TRUE(next.read(0, 10, out));
  EXPECT_EQ(out, "a");  // nothing of the last message shows
}

TEST(ReplayBuffer, AllBuffersTogetherStayWithinTheTotal) {
  // limits.replay_memory_total: the memory the others hold counts; past
  // the total a message spills from its first byte, and its bytes read
  // back in order; a cleared buffer gives its share back.
  const std::uint64_t base = ReplayBuffer::memory_in_use();
  const std::uint64_t total = base + 1000;
  ReplayBuffer a(800, "/tmp", total), b(800, "/tmp", total), c(800, "/tmp", total);
  ASSERT_TRUE(a.append(std::string(700, 'a')));
  EXPECT_FALSE(a.spilled());
  const std::string bb = std::string(250, 'b') + std::string(250, 'B');
  ASSERT_TRUE(b.append(bb));  // 300 of it fit; the rest goes to the file
  EXPECT_TRUE(b.spilled());
  EXPECT_EQ(read_all(b, 7), bb);
  EXPECT_EQ(ReplayBuffer::memory_in_use(), base + 1000);
  ASSERT_TRUE(c.append("ccc"));
  EXPECT_TRUE(c.spilled());  // nothing left: from the first byte
  ASSERT_TRUE(a.append("more"));
  EXPECT_TRUE(a.spilled());
  EXPECT_EQ(read_all(a, 64), std::string(700, 'a') + "more");
  a.clear();
  b.clear();
  c.clear();
  EXPECT_EQ(ReplayBuffer::memory_in_use(), base);
  ReplayBuffer d(800, "/tmp", total);
  ASSERT_TRUE(d.append("ddd"));
  EXPECT_FALSE(d.spilled());
}

TEST(BufferCache, KeepsBoundedBytesPerThread) {
  std::vector<std::string> held;
  for (int i = 0; i < 20; ++i) held.push_back(std::string(kCachedBufferBytes / 2, 'y'));
  for (auto& s : held) give_buffer(std::move(s));
  std::size_t kept = 0;
  for (std::size_t i = 0; i < kCachedBuffers + 4; ++i) {
    // Once the cache is empty, take_buffer() gives a plain empty string.
    const std::size_t capacity = take_buffer().capacity();
    if (capacity > std::string().capacity()) kept += capacity;
  }
  EXPECT_LE(kept, kCachedBufferBytes);
  EXPECT_EQ(take_buffer().capacity(), std::string().capacity());  // drained
}

}  // namespace smtplb::relay
