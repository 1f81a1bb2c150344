#include "bdxml.h"

#include <libxml/xmlwriter.h>

#include <initializer_list>
#include <memory>
#include <utility>

namespace bd::xml {

namespace {

using Attr = std::pair<const char*, std::string>;

// A small RAII front over xmlTextWriter: one element per call, indented output.
class Writer {
public:
    Writer() : buf_(xmlBufferCreate()), w_(xmlNewTextWriterMemory(buf_, 0)) {
        xmlTextWriterSetIndent(w_, 1);
        xmlTextWriterSetIndentString(w_, BAD_CAST "  ");
    }
    ~Writer() {
        if (w_) xmlFreeTextWriter(w_);
        xmlBufferFree(buf_);
    }
    void open(const char* name, std::initializer_list<Attr> attrs = {}) {
        xmlTextWriterStartElement(w_, BAD_CAST name);
        for (const Attr& a : attrs)
            xmlTextWriterWriteAttribute(w_, BAD_CAST a.first, BAD_CAST a.second.c_str());
    }
    void leaf(const char* name, std::initializer_list<Attr> attrs) {
        open(name, attrs);
        close();
    }
    void text(const char* name, const std::string& value) {
        xmlTextWriterWriteElement(w_, BAD_CAST name, BAD_CAST value.c_str());
    }
    void close() { xmlTextWriterEndElement(w_); }
    std::string finish() {
        xmlFreeTextWriter(w_);  // flushes into buf_
        w_ = nullptr;
        return std::string(reinterpret_cast<const char*>(xmlBufferContent(buf_)));
    }

private:
    xmlBufferPtr buf_;
    xmlTextWriterPtr w_;
};

}  // namespace

std::string pool_xml(const std::string& pool_name, const std::string& vg,
                     const std::string& thinpool, bool shared) {
    Writer w;
    w.open("pool", {{"type", "bd"}});
    w.text("name", pool_name);
    w.open("source");
    w.text("name", shared ? vg + "@" + thinpool : vg + "/" + thinpool);
    w.close();
    w.open("target");
    w.text("path", "/dev/disk/by-bd/" + (shared ? vg + "@" + thinpool : vg));
    w.close();
    w.close();
    return w.finish();
}

std::string domain_disk_xml(const std::string& pool_name, const std::string& volume,
                            const std::string& target_dev, const std::string& format) {
    Writer w;
    w.open("disk", {{"type", "volume"}, {"device", "disk"}});
    // A full thin pool fails writes at once (bd pools are made --errorwhenfull y):
    // QEMU then pauses the VM instead of showing the guest an I/O error, and
    // `virsh resume` continues it once the pool has room (docs/ARCHITECTURE.md).
    w.leaf("driver", {{"name", "qemu"}, {"type", format}, {"cache", "none"}, {"io", "native"},
                      {"discard", "unmap"}, {"error_policy", "stop"}});
    w.leaf("source", {{"pool", pool_name}, {"volume", volume}});
    w.leaf("target", {{"dev", target_dev}, {"bus", "virtio"}});
    w.close();
    return w.finish();
}

}  // namespace bd::xml
