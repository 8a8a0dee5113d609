#pragma once
// Where each value of a JSON text sits. nlohmann/json 3.11 keeps no positions, so a small strict
// scanner walks the raw text once and records, for every value, the byte offset of the value and
// (for object members) of its key. Lookups take RFC 6901 JSON pointers ("/proxies/0/name").
//
// Positions are 1-based lines and 1-based columns counted in BYTES (not characters: a multi-byte
// UTF-8 character or a tab advances the column by its byte count), which is what editors that
// jump to "line:byte" and `cut -b` agree on and what nlohmann's byte offsets give.
//
// The scanner is meant for text nlohmann already accepted, but it must survive any input: it never
// reads out of bounds, never recurses (deep nesting cannot overflow the stack) and stops at the
// first thing it does not understand, leaving a partial map (complete() == false).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pfp::policy {

struct SourcePos {
    int line = 0;    // 1-based; 0 when unknown
    int column = 0;  // 1-based, in bytes
    bool known() const { return line > 0; }
    bool operator==(const SourcePos&) const = default;
};

// A key that appears twice in one object. nlohmann keeps the last value silently; we report it.
struct DuplicateKey {
    std::string pointer;  // of the member (both occurrences share it), shortened()
    std::string name;     // the decoded key, shortened()
    SourcePos first;      // the first occurrence's key
    SourcePos second;     // the repeated key, where the error is reported
};

// Escapes one reference token per RFC 6901 ('~' -> "~0", '/' -> "~1").
std::string escape_pointer_token(std::string_view token);

// Pointers and keys quoted in diagnostics are cut to this many bytes (at a UTF-8 character
// boundary) plus "...": a hostile file with megabyte-long keys must not turn a hundred
// diagnostics into gigabytes of text. Such a pointer is for reading, no longer for lookups.
constexpr size_t kMaxShownBytes = 256;
std::string shortened(std::string_view text, size_t max = kMaxShownBytes);

class SourceMap {
  public:
    explicit SourceMap(std::string_view text);

    // Position of the value at `pointer` ("" = the root); unknown (line 0) if there is none.
    // For a repeated key this is the last occurrence, the one nlohmann keeps.
    SourcePos value(std::string_view pointer) const;
    // Position of the opening quote of the member name at `pointer`; unknown for array elements.
    SourcePos key(std::string_view pointer) const;
    // Line and column of a byte offset; offsets past the end map to the end of the text.
    SourcePos at_offset(size_t offset) const;

    // Duplicates in text order of their second occurrence; at most kMaxDuplicates are kept.
    const std::vector<DuplicateKey>& duplicates() const { return duplicates_; }
    size_t duplicates_dropped() const { return duplicates_dropped_; }
    // True when the whole text was one well-formed JSON value.
    bool complete() const { return complete_; }

    static constexpr size_t kMaxDuplicates = 100;

  private:
    static constexpr size_t kNone = static_cast<size_t>(-1);
    enum class Kind : uint8_t { scalar, object, array };

    struct Node {
        size_t value_offset = 0;
        size_t key_offset = kNone;  // object members only
        uint32_t parent = UINT32_MAX;
        Kind kind = Kind::scalar;
        std::string token;               // the decoded member name, or the array index
        std::vector<uint32_t> elements;  // arrays only
    };

    struct MemberKey {
        uint32_t parent;
        std::string name;
        bool operator==(const MemberKey&) const = default;
    };
    struct MemberKeyHash {
        size_t operator()(const MemberKey& k) const {
            return std::hash<std::string>()(k.name) ^ (size_t{k.parent} * 0x9e3779b97f4a7c15ULL);
        }
    };

    void scan(std::string_view text);
    // Returns UINT32_MAX when the node table is full (only with more than 4G values).
    uint32_t add_node(size_t value_offset, size_t key_offset, uint32_t parent, std::string name);
    const Node* find(std::string_view pointer) const;
    std::string pointer_of(uint32_t node) const;

    size_t text_size_ = 0;
    std::vector<size_t> line_starts_;  // byte offset of the first byte of each line
    std::vector<Node> nodes_;
    std::unordered_map<MemberKey, uint32_t, MemberKeyHash> members_;
    std::vector<DuplicateKey> duplicates_;
    size_t duplicates_dropped_ = 0;
    bool complete_ = false;
};

}  // namespace pfp::policy
