// libFuzzer entry point for the raw packet stream framer (untrusted: the stream comes from the
// vsock peer). Byte 0 picks a read size; the rest is the stream. The framer must give the same
// packets and the same verdict whether the stream arrives in reads of that size, in one read or a
// byte at a time; every packet it yields must pass the header check with exactly its own length;
// and the packets plus any unfinished tail must be the stream's bytes up to the error, in order.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/packet_framer.hpp"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

struct Run {
    std::vector<uint8_t> packets;  // concatenated
    size_t count = 0;
    std::string error;
    std::string eof;
};

// One framer for every run, reset before each: a new one costs a 128 KiB allocation, which under
// ASan is most of an input's time (about 0.8 ms each; 3 per input held the smoke run to ~400
// inputs a second). A reset framer must behave as a new one, which the three runs then check too.
pfp::PacketFramer& shared_framer() {
    static pfp::PacketFramer framer(0);  // the smallest buffer: compaction happens often
    return framer;
}

Run frame(const uint8_t* data, size_t size, size_t chunk) {
    pfp::PacketFramer& framer = shared_framer();
    framer.reset();
    Run run;
    size_t pos = 0;
    while (pos < size && run.error.empty()) {
        const auto space = framer.write_space();
        check(!space.empty());
        const size_t n = std::min({chunk, size - pos, space.size()});
        std::memcpy(space.data(), data + pos, n);
        framer.commit(n);
        pos += n;
        for (;;) {
            const auto next = framer.next();
            if (next.status == pfp::PacketFramer::Status::need_more) break;
            if (next.status == pfp::PacketFramer::Status::error) {
                run.error = framer.error();
                check(!run.error.empty() && run.error.find('\n') == std::string::npos);
                check(framer.write_space().empty());
                break;
            }
            const auto c = pfp::check_packet_header(next.packet);
            check(c.status == pfp::PacketHeaderCheck::Status::length_known);
            check(c.length == next.packet.size() && c.length >= pfp::kIpv4MinHeader);
            check(c.length <= pfp::kMaxFramedPacket);
            run.packets.insert(run.packets.end(), next.packet.begin(), next.packet.end());
            ++run.count;
            check(framer.packets() == run.count && framer.stream_offset() == run.packets.size());
        }
    }
    if (run.error.empty()) {
        run.eof = framer.eof_error();
        check(run.eof.find('\n') == std::string::npos);
        check(run.eof.empty() == (run.packets.size() == size));
    }
    check(run.packets.size() <= size);
    check(run.packets.empty() || std::memcmp(run.packets.data(), data, run.packets.size()) == 0);
    return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const size_t chunk = size_t{data[0]} * 7 + 1;
    ++data;
    --size;
    const Run a = frame(data, size, chunk);
    const Run b = frame(data, size, size + 1);
    const Run c = frame(data, size, 1);
    check(a.packets == b.packets && a.packets == c.packets);
    check(a.count == b.count && a.count == c.count);
    check(a.error == b.error && a.error == c.error);
    check(a.eof == b.eof && a.eof == c.eof);
    return 0;
}
