#include "relay/replay_buffer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "relay/buffer_cache.hpp"

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
