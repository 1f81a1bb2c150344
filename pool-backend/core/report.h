// JSON forms of core objects, as documented in docs/CLI-CONTRACT.md.
#pragma once

#include <nlohmann/json.hpp>

#include "export.h"

namespace bd {

/// "thin", "thick" or "snapshot".
const char* type_name(VolumeType type);

/// A volume as the contract's Volume object.
nlohmann::json to_json(const Volume& v, const Export& ex);

/// An export as the contract's Export object.
nlohmann::json to_json(const ExportInfo& info);

/// An error as {"error": {"code", "errno", "message"}}.
nlohmann::json to_json(const Error& e);

}  // namespace bd
