// LibTorch's DCGAN example, ported: a generator of transposed convolutions and a convolutional
// discriminator trained against each other on MNIST, with checkpoints and samples.
// What changed: see README.md.
//   ember-port-dcgan [DATA_DIR] [EPOCHS] [BATCHES_PER_EPOCH] [OUT_DIR]   (defaults: data/mnist 30 all .)
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ember/ember.hpp>

namespace nn = ember::nn;
using ember::Tensor;

// The size of the noise vector fed to the generator.
constexpr int64_t kNoiseSize = 100;
// The batch size for training.
constexpr int64_t kBatchSize = 64;
// After how many batches to create a new checkpoint periodically.
constexpr int64_t kCheckpointEvery = 200;
// How many images to sample at every checkpoint.
constexpr int64_t kNumberOfSamplesPerCheckpoint = 10;
// After how many batches to log a new update with the loss value.
constexpr int64_t kLogInterval = 10;

struct DCGANGenerator : nn::Module<float> {
  explicit DCGANGenerator(int64_t noise_size) {
    conv1 = register_module("conv1", nn::ConvTranspose2d(noise_size, 256, 4, {.bias = false}));
    batch_norm1 = register_module("batch_norm1", nn::BatchNorm2d<float>(256));
    conv2 = register_module("conv2", nn::ConvTranspose2d(256, 128, 3, {.stride = 2, .padding = 1, .bias = false}));
    batch_norm2 = register_module("batch_norm2", nn::BatchNorm2d<float>(128));
    conv3 = register_module("conv3", nn::ConvTranspose2d(128, 64, 4, {.stride = 2, .padding = 1, .bias = false}));
    batch_norm3 = register_module("batch_norm3", nn::BatchNorm2d<float>(64));
    conv4 = register_module("conv4", nn::ConvTranspose2d(64, 1, 4, {.stride = 2, .padding = 1, .bias = false}));
  }

  Tensor<float> forward(const Tensor<float>& noise) override {
    Tensor<float> x = ember::relu(batch_norm1(conv1(noise)));
    x = ember::relu(batch_norm2(conv2(x)));
    x = ember::relu(batch_norm3(conv3(x)));
    return ember::tanh(conv4(x));
  }
  std::string type_name() const override { return "DCGANGenerator"; }

  nn::ModuleHolder<nn::ConvTranspose2d<float>> conv1, conv2, conv3, conv4;
  nn::ModuleHolder<nn::BatchNorm2d<float>> batch_norm1, batch_norm2, batch_norm3;
};

nn::Sequential<float> make_discriminator() {
  return nn::Sequential(
      // Layer 1
      nn::Conv2d(1, 64, 4, {.stride = 2, .padding = 1, .bias = false}), nn::LeakyReLU(0.2),
      // Layer 2
      nn::Conv2d(64, 128, 4, {.stride = 2, .padding = 1, .bias = false}), nn::BatchNorm2d<float>(128),
      nn::LeakyReLU(0.2),
      // Layer 3
      nn::Conv2d(128, 256, 4, {.stride = 2, .padding = 1, .bias = false}), nn::BatchNorm2d<float>(256),
      nn::LeakyReLU(0.2),
      // Layer 4
      nn::Conv2d(256, 1, 3, {.stride = 1, .padding = 0, .bias = false}), nn::Sigmoid());
}

int main(int argc, char** argv) {
  const std::string data_root = argc > 1 ? argv[1] : "data/mnist";
  const int64_t epochs = argc > 2 ? std::atoll(argv[2]) : 30;
  const int64_t max_batches = argc > 3 ? std::atoll(argv[3]) : 0;
  const std::string out = argc > 4 ? argv[4] : ".";
  ember::manual_seed(1);

  DCGANGenerator generator(kNoiseSize);
  nn::Sequential<float> discriminator = make_discriminator();

  // Images in [-1, 1], as the generator's tanh gives them.
  auto dataset = std::make_shared<ember::data::MNIST>(data_root, true, ember::data::Normalize{{0.5}, {0.5}});
  ember::data::DataLoader<float, int64_t> data_loader(dataset, {.batch_size = kBatchSize, .shuffle = true,
                                                                .seed = 1, .num_workers = 2});
  const int64_t batches_per_epoch =
      max_batches > 0 ? std::min(max_batches, data_loader.batches_per_epoch()) : data_loader.batches_per_epoch();

  ember::optim::Adam generator_optimizer(generator.parameters(), {.lr = 2e-4, .beta1 = 0.5});
  ember::optim::Adam discriminator_optimizer(discriminator.parameters(), {.lr = 2e-4, .beta1 = 0.5});

  int64_t checkpoint_counter = 1;
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    int64_t batch_index = 0;
    for (auto& batch : data_loader) {
      const int64_t n = batch.data.size(0);
      // Train discriminator with real images.
      discriminator.zero_grad();
      Tensor<float> real_images = batch.data;
      Tensor<float> real_labels = ember::empty<float>({n}).uniform_(0.8, 1.0);
      Tensor<float> real_output = discriminator(real_images).reshape(real_labels.shape());
      Tensor<float> d_loss_real = ember::binary_cross_entropy(real_output, real_labels);
      d_loss_real.backward();

      // Train discriminator with fake images.
      Tensor<float> noise = ember::randn<float>({n, kNoiseSize, 1, 1});
      Tensor<float> fake_images = generator(noise);
      Tensor<float> fake_labels = ember::zeros<float>({n});
      Tensor<float> fake_output = discriminator(fake_images.detach()).reshape(fake_labels.shape());
      Tensor<float> d_loss_fake = ember::binary_cross_entropy(fake_output, fake_labels);
      d_loss_fake.backward();

      Tensor<float> d_loss = d_loss_real + d_loss_fake;
      discriminator_optimizer.step();

      // Train generator.
      generator.zero_grad();
      fake_labels.fill_(1);
      fake_output = discriminator(fake_images).reshape(fake_labels.shape());
      Tensor<float> g_loss = ember::binary_cross_entropy(fake_output, fake_labels);
      g_loss.backward();
      generator_optimizer.step();
      ++batch_index;

      if (batch_index % kLogInterval == 0 || batch_index == batches_per_epoch) {
        std::printf("\r[%2lld/%2lld][%3lld/%3lld] D_loss: %.4f | G_loss: %.4f\n", static_cast<long long>(epoch),
                    static_cast<long long>(epochs), static_cast<long long>(batch_index),
                    static_cast<long long>(batches_per_epoch), static_cast<double>(d_loss.item<float>()),
                    static_cast<double>(g_loss.item<float>()));
      }
      if (batch_index % kCheckpointEvery == 0 || batch_index == batches_per_epoch) {
        // Checkpoint the model and optimizer state, and sample images.
        ember::save(generator, out + "/generator-checkpoint.safetensors");
        ember::save(generator_optimizer, out + "/generator-optimizer-checkpoint.ckpt");
        ember::save(discriminator, out + "/discriminator-checkpoint.safetensors");
        ember::save(discriminator_optimizer, out + "/discriminator-optimizer-checkpoint.ckpt");
        generator.eval();
        Tensor<float> samples;
        {
          ember::NoGradGuard no_grad;
          samples = generator(ember::randn<float>({kNumberOfSamplesPerCheckpoint, kNoiseSize, 1, 1}));
        }
        generator.train();
        ember::io::write_safetensors(out + "/dcgan-sample-" + std::to_string(checkpoint_counter) + ".safetensors",
                                     {{"samples", (samples + 1.0) / 2.0}});
        std::printf("-> checkpoint %lld\n", static_cast<long long>(++checkpoint_counter));
      }
      if (batch_index >= batches_per_epoch) break;
    }
  }
  std::printf("Training complete!\n");
}
