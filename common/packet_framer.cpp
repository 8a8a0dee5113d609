#include "common/packet_framer.hpp"

#include <algorithm>
#include <cstring>

namespace pfp {
namespace {

PacketHeaderCheck invalid(size_t field_offset, std::string_view field, std::string_view problem) {
    PacketHeaderCheck c;
    c.status = PacketHeaderCheck::Status::invalid;
    c.field_offset = field_offset;
    c.field = field;
    c.problem = problem;
    return c;
}

PacketHeaderCheck known(size_t length) {
    PacketHeaderCheck c;
    c.status = PacketHeaderCheck::Status::length_known;
    c.length = length;
    return c;
}

unsigned be16(const uint8_t* p) {
    return (unsigned{p[0]} << 8) | p[1];
}

}  // namespace

PacketHeaderCheck check_packet_header(std::span<const uint8_t> head) noexcept {
    if (head.empty()) return {};
    const unsigned version = head[0] >> 4;
    if (version == 4) {
        const size_t header = size_t{head[0] & 0x0fu} * 4;
        if (header < kIpv4MinHeader) return invalid(0, "IHL", "is below 5");
        if (head.size() < 4) return {};
        const size_t total = be16(&head[2]);
        if (total < header) return invalid(2, "total length", "is shorter than the header");
        return known(total);
    }
    if (version == 6) {
        if (head.size() < 7) return {};
        const size_t payload = be16(&head[4]);
        // A jumbogram says 0 here and carries its length in a hop-by-hop option; nothing on this
        // path sends one, and any other packet with a hop-by-hop header has a payload of 8 or more.
        if (payload == 0 && head[6] == 0)
            return invalid(4, "payload length", "is 0 with a hop-by-hop header (jumbogram)");
        return known(kIpv6Header + payload);
    }
    return invalid(0, "version", "is neither 4 nor 6");
}

PacketFramer::PacketFramer(size_t capacity) : buf_(std::max(capacity, 2 * kMaxFramedPacket)) {}

void PacketFramer::reset() noexcept {
    start_ = end_ = 0;
    offset_ = packets_ = 0;
    error_.clear();
}

std::span<uint8_t> PacketFramer::write_space() noexcept {
    if (!error_.empty()) return {};
    // Keep room for a whole packet after the partial one: move it to the front once the tail is
    // shorter than the largest packet (the buffer holds two, so there is then room).
    if (buf_.size() - end_ < kMaxFramedPacket && start_ > 0) {
        std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
    }
    return {buf_.data() + end_, buf_.size() - end_};
}

void PacketFramer::commit(size_t n) noexcept {
    end_ += std::min(n, buf_.size() - end_);
}

PacketFramer::Next PacketFramer::next() noexcept {
    if (!error_.empty()) return {Status::error, {}};
    const std::span<const uint8_t> avail{buf_.data() + start_, end_ - start_};
    const PacketHeaderCheck c = check_packet_header(avail);
    switch (c.status) {
        case PacketHeaderCheck::Status::need_more:
            return {Status::need_more, {}};
        case PacketHeaderCheck::Status::invalid:
            error_ = "invalid IP header at stream offset " +
                     std::to_string(offset_ + c.field_offset) + " (packet " +
                     std::to_string(packets_ + 1) + " starting at offset " +
                     std::to_string(offset_) + "): " + std::string(c.field) + " " +
                     std::string(c.problem) + "; the stream cannot be resynchronised";
            return {Status::error, {}};
        case PacketHeaderCheck::Status::length_known:
            break;
    }
    if (avail.size() < c.length) return {Status::need_more, {}};
    start_ += c.length;
    offset_ += c.length;
    ++packets_;
    if (start_ == end_) start_ = end_ = 0;  // cheap reset keeps the common case memmove-free
    return {Status::packet, avail.first(c.length)};
}

std::string PacketFramer::eof_error() const {
    if (start_ == end_) return {};
    const PacketHeaderCheck c = check_packet_header({buf_.data() + start_, end_ - start_});
    std::string what = "stream ended inside packet " + std::to_string(packets_ + 1) +
                       " starting at offset " + std::to_string(offset_) + ": " +
                       std::to_string(end_ - start_);
    if (c.status == PacketHeaderCheck::Status::length_known)
        return what + " of its " + std::to_string(c.length) + " bytes arrived";
    return what + " bytes arrived, too few for its header";
}

}  // namespace pfp
