#include "workers/filesystem_view.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/error.hpp"
#include "common/unique_fd.hpp"

#ifdef PFPROXY_SANITIZE
#include <sanitizer/common_interface_defs.h>
#endif

namespace pfp::sandbox {

namespace {

void write_file(const char* path, const std::string& text) {
    unique_fd fd(::open(path, O_WRONLY | O_CLOEXEC));
    if (!fd) throw_errno(std::string("open ") + path);
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        throw_errno(std::string("write ") + path);
}

// mkdir -p below `root`, which the caller may write.
void make_dirs(const std::string& root, const std::string& absolute) {
    std::string path = root;
    size_t at = 1;
    while (at <= absolute.size()) {
        const size_t next = std::min(absolute.find('/', at), absolute.size());
        if (next > at) {
            path += "/" + absolute.substr(at, next - at);
            if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
        }
        at = next + 1;
    }
}

// Drops what the user namespace gave: the bounding set, then every set; checks they are empty.
void drop_namespace_capabilities() {
    for (unsigned long cap = 0; ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0; ++cap) {
    }
    if (errno != EINVAL) throw_errno("prctl(PR_CAPBSET_DROP)");
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    if (::syscall(SYS_capset, &header, data) != 0) throw_errno("capset (no capabilities)");
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        throw_errno("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
    if (::syscall(SYS_capget, &header, data) != 0) throw_errno("capget");
    for (const auto& d : data) {
        if (d.effective || d.permitted || d.inheritable)
            throw std::runtime_error("capabilities left after leaving the user namespace's set");
    }
}

// The unprivileged user namespace is refused: by a sysctl (user.max_user_namespaces=0, ENOSPC
// once used up), a seccomp filter (systemd's RestrictNamespaces=, EPERM), or a threaded caller.
bool namespace_refused(int err) {
    return err == EPERM || err == ENOSPC || err == EUSERS || err == EINVAL || err == EACCES;
}

}  // namespace

std::optional<Endpoint> own_upstream(const Handover& h) {
    const std::string* text = nullptr;
    if (const auto* o = std::get_if<StreamOptions>(&h.options)) {
        if (has_upstream_endpoint(o->upstream_mode)) text = &o->upstream;
    } else if (const auto* d = std::get_if<DatagramOptions>(&h.options)) {
        text = &d->upstream;
    } else if (const auto* p = std::get_if<PacketOptions>(&h.options)) {
        text = &p->upstream;
    } else if (const auto* t = std::get_if<TunnelOptions>(&h.options)) {
        text = &t->upstream;
    }
    if (text == nullptr || text->empty()) return std::nullopt;
    return parse_endpoint(*text);
}

std::optional<FilesystemView> filesystem_view(const Handover& h) {
    const auto upstream = own_upstream(h);
    if (!upstream ||
        (upstream->scheme != Scheme::unix_stream && upstream->scheme != Scheme::fc_vsock))
        return std::nullopt;
    const std::string& path = upstream->path;
    if (!path.empty() && path.front() == '@') return FilesystemView{};
    if (path.empty() || path.front() != '/')
        throw std::runtime_error("upstream socket path " + path + " is not absolute");
    const size_t slash = path.rfind('/');
    return FilesystemView{slash == 0 ? "/" : path.substr(0, slash)};
}

ViewOutcome enter_filesystem_view(const FilesystemView& view) {
#ifdef PFPROXY_SANITIZE
    // The sanitizer runtime caches /proc/self/maps now: its reports need it after the chroot.
    __sanitizer_sandbox_on_notify(nullptr);
#endif
    if (view.directory == "/")
        return {false, "not applied: the upstream socket is in / (give it a directory of its own)"};
    const uid_t uid = ::geteuid();
    const gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
        const int err = errno;
        if (namespace_refused(err))
            return {false, std::string("unavailable (unshare(CLONE_NEWUSER|CLONE_NEWNS): ") +
                               std::strerror(err) +
                               "): every Unix socket its uid may open is in reach"};
        throw_errno("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
    }
    // Our own ids, mapped to themselves: permission checks on the upstream socket do not change.
    write_file("/proc/self/setgroups", "deny");
    write_file("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1\n");
    write_file("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1\n");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        throw_errno("mount(/, MS_REC|MS_PRIVATE)");
    // The directory as this namespace has it (a bind mount's source must be in the caller's
    // namespace), held before the tmpfs below could hide it.
    unique_fd dir;
    if (!view.directory.empty()) {
        dir.reset(::open(view.directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!dir) throw_errno("upstream directory " + view.directory);
    }
    // Any directory will do as the new root's mount point: the mount exists in this namespace
    // only. Not /proc, through which the upstream directory is bound.
    std::string root;
    for (const char* candidate : {"/tmp", "/mnt", "/run", "/var", "/dev", "/srv"}) {
        if (::mount("pf-proxy-view", candidate, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "size=64k,nr_inodes=1024,mode=0755") == 0) {
            root = candidate;
            break;
        }
    }
    if (root.empty()) throw_errno("mount tmpfs for the filesystem view");
    if (dir) {
        make_dirs(root, view.directory);
        const std::string target = root + view.directory;
        const std::string source = "/proc/self/fd/" + std::to_string(dir.get());
        // Recursive: a directory with mounts below it cannot be bound without them.
        if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
            throw_errno("bind " + view.directory + " into the filesystem view");
        dir.reset();
    }
    if (::mount(nullptr, root.c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        throw_errno("remount the filesystem view read-only");
    if (::chdir(root.c_str()) != 0 || ::chroot(".") != 0 || ::chdir("/") != 0)
        throw_errno("chroot into the filesystem view");
    drop_namespace_capabilities();
    return {true, view.directory.empty()
                      ? "an empty read-only root (abstract upstream), own user and mount namespace"
                      : "only " + view.directory +
                            " under a read-only root, own user and mount "
                            "namespace"};
}

}  // namespace pfp::sandbox
