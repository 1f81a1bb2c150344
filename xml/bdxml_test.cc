#include "bdxml.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace bd::xml {

namespace {

std::string golden(const std::string& name) {
    std::ifstream in(std::string(BD_TEST_DATA) + "/xml/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Validates against xml/storagepool-bd.rng with xmllint (libxml2-utils).
bool valid_pool(const std::string& doc) {
    char path[] = "/tmp/bdpool-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return false;
    FILE* f = fdopen(fd, "w");
    fputs(doc.c_str(), f);
    fclose(f);
    std::string cmd = std::string("xmllint --noout --relaxng ") + BD_SOURCE_ROOT +
                      "/xml/storagepool-bd.rng " + path + " 2>/dev/null";
    int rc = system(cmd.c_str());
    remove(path);
    return rc == 0;
}

}  // namespace

TEST(PoolXml, MatchesGoldenAndSchema) {
    std::string doc = pool_xml("bd", "vg0", "pool");
    EXPECT_EQ(doc, golden("pool.xml"));
    EXPECT_TRUE(valid_pool(doc)) << doc;
}

TEST(PoolXml, SharedExportIsVgAtPool) {
    std::string doc = pool_xml("hosta", "shared0", "hosta", true);
    EXPECT_NE(doc.find("<name>shared0@hosta</name>"), std::string::npos) << doc;
    EXPECT_NE(doc.find("<path>/dev/disk/by-bd/shared0@hosta</path>"), std::string::npos) << doc;
    EXPECT_TRUE(valid_pool(doc)) << doc;
    EXPECT_FALSE(valid_pool(pool_xml("x", "vg0@a", "b", true))) << "two '@' must not validate";
}

TEST(PoolXml, EscapesNames) {
    std::string doc = pool_xml("a<b&'c", "vg0", "pool");
    EXPECT_NE(doc.find("<name>a&lt;b&amp;'c</name>"), std::string::npos) << doc;
}

TEST(DomainDiskXml, MatchesGolden) {
    EXPECT_EQ(domain_disk_xml("bd", "vm/disk0.img", "vda", "raw"), golden("domain-disk.xml"));
    std::string doc = domain_disk_xml("bd", "a\"b.img", "vdb", "qcow2");
    EXPECT_NE(doc.find("volume=\"a&quot;b.img\""), std::string::npos) << doc;
}

}  // namespace bd::xml
