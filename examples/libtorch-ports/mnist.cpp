// LibTorch's MNIST example, ported: a small CNN trained with SGD and momentum, a test pass with
// the summed loss and the accuracy after each epoch. What changed: see README.md.
//   ember-port-mnist [DATA_DIR] [EPOCHS] [BATCHES_PER_EPOCH]   (defaults: data/mnist 10 all)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <ember/ember.hpp>

namespace nn = ember::nn;
using ember::Tensor;

// The batch size during training and testing.
constexpr int64_t kTrainBatchSize = 64;
constexpr int64_t kTestBatchSize = 1000;
// After how many batches to log a new update with the loss value.
constexpr int64_t kLogInterval = 10;

struct Net : nn::Module<float> {
  Net() {
    conv1 = register_module("conv1", nn::Conv2d(1, 10, 5));
    conv2 = register_module("conv2", nn::Conv2d(10, 20, 5));
    conv2_drop = register_module("conv2_drop", nn::Dropout2d<float>(0.5));
    fc1 = register_module("fc1", nn::Linear(320, 50));
    fc2 = register_module("fc2", nn::Linear(50, 10));
  }

  Tensor<float> forward(const Tensor<float>& input) override {
    Tensor<float> x = ember::relu(ember::max_pool2d(conv1(input), 2));
    x = ember::relu(ember::max_pool2d(conv2_drop(conv2(x)), 2));
    x = x.reshape({-1, 320});
    x = ember::relu(fc1(x));
    x = ember::dropout(x, /*p=*/0.5, /*training=*/is_training());
    x = fc2(x);
    return ember::log_softmax(x, /*dim=*/1);
  }
  std::string type_name() const override { return "Net"; }

  nn::ModuleHolder<nn::Conv2d<float>> conv1, conv2;
  nn::ModuleHolder<nn::Dropout2d<float>> conv2_drop;
  nn::ModuleHolder<nn::Linear<float>> fc1, fc2;
};

using DataLoader = ember::data::DataLoader<float, int64_t>;

void train(int64_t epoch, Net& model, DataLoader& data_loader, ember::optim::SGD<float>& optimizer,
           int64_t dataset_size, int64_t max_batches) {
  model.train();
  int64_t batch_idx = 0;
  for (auto& batch : data_loader) {
    optimizer.zero_grad();
    Tensor<float> output = model(batch.data);
    Tensor<float> loss = ember::nll_loss(output, batch.target);
    if (std::isnan(loss.item<float>())) {
      std::fprintf(stderr, "the loss is NaN\n");
      std::exit(1);
    }
    loss.backward();
    optimizer.step();
    if (batch_idx++ % kLogInterval == 0) {
      std::printf("\rTrain Epoch: %lld [%5lld/%5lld] Loss: %.4f", static_cast<long long>(epoch),
                  static_cast<long long>(batch_idx * batch.data.size(0)), static_cast<long long>(dataset_size),
                  static_cast<double>(loss.item<float>()));
    }
    if (max_batches > 0 && batch_idx >= max_batches) break;
  }
}

void test(Net& model, DataLoader& data_loader, int64_t dataset_size) {
  ember::NoGradGuard no_grad;
  model.eval();
  double test_loss = 0;
  int64_t correct = 0;
  for (const auto& batch : data_loader) {
    Tensor<float> output = model(batch.data);
    test_loss += ember::nll_loss(output, batch.target, {.reduction = nn::Reduction::Sum}).item<float>();
    Tensor<int64_t> pred = output.argmax(1);
    correct += pred.eq(batch.target).sum().item<int64_t>();
  }
  test_loss /= static_cast<double>(dataset_size);
  std::printf("\nTest set: Average loss: %.4f | Accuracy: %.3f\n", test_loss,
              static_cast<double>(correct) / static_cast<double>(dataset_size));
}

int main(int argc, char** argv) {
  const std::string data_root = argc > 1 ? argv[1] : "data/mnist";
  const int64_t epochs = argc > 2 ? std::atoll(argv[2]) : 10;
  const int64_t max_batches = argc > 3 ? std::atoll(argv[3]) : 0;
  ember::manual_seed(1);

  Net model;
  const ember::data::Normalize normalize{{0.1307}, {0.3081}};
  auto train_dataset = std::make_shared<ember::data::MNIST>(data_root, /*train=*/true, normalize);
  const int64_t train_size = train_dataset->size();
  ember::data::DataLoader<float, int64_t> train_loader(train_dataset,
                                                       {.batch_size = kTrainBatchSize, .shuffle = true, .seed = 1});
  auto test_dataset = std::make_shared<ember::data::MNIST>(data_root, /*train=*/false, normalize);
  const int64_t test_size = test_dataset->size();
  ember::data::DataLoader<float, int64_t> test_loader(test_dataset, {.batch_size = kTestBatchSize});

  ember::optim::SGD optimizer(model.parameters(), {.lr = 0.01, .momentum = 0.5});
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    train(epoch, model, train_loader, optimizer, train_size, max_batches);
    test(model, test_loader, test_size);
  }
}
