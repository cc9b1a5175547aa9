#pragma once
// ember::distributions: probability distributions as torch.distributions (Normal, Uniform,
// Bernoulli, Categorical, kl_divergence).
#include "ember/distributions/distributions.hpp"
