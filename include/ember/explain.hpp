#pragma once
// ember::explain (attribution, uncertainty) and ember::adversarial (attacks).
#include "ember/explain/adversarial.hpp"
#include "ember/explain/explain.hpp"
