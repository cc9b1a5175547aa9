// LibTorch's MNIST example as the PyTorch project ships it (pytorch/examples cpp/mnist), with the
// same command line as ember's port (examples/libtorch-ports/mnist.cpp), for timing the two side by
// side (scripts/bench-ports.sh).
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>

struct Net : torch::nn::Module {
  Net() : conv1(torch::nn::Conv2dOptions(1, 10, 5)), conv2(torch::nn::Conv2dOptions(10, 20, 5)), fc1(320, 50), fc2(50, 10) {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("conv2_drop", conv2_drop);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(torch::max_pool2d(conv1->forward(x), 2));
    x = torch::relu(torch::max_pool2d(conv2_drop->forward(conv2->forward(x)), 2));
    x = x.view({-1, 320});
    x = torch::relu(fc1->forward(x));
    x = torch::dropout(x, 0.5, is_training());
    x = fc2->forward(x);
    return torch::log_softmax(x, 1);
  }
  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Dropout2d conv2_drop;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};

int main(int argc, char** argv) {
  const std::string data_root = argc > 1 ? argv[1] : "data/mnist";
  const int64_t epochs = argc > 2 ? std::atoll(argv[2]) : 10;
  const int64_t max_batches = argc > 3 ? std::atoll(argv[3]) : 0;
  torch::manual_seed(1);
  Net model;
  auto train_dataset = torch::data::datasets::MNIST(data_root)
                           .map(torch::data::transforms::Normalize<>(0.1307, 0.3081))
                           .map(torch::data::transforms::Stack<>());
  const size_t train_size = train_dataset.size().value();
  auto train_loader = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(std::move(train_dataset), 64);
  auto test_dataset = torch::data::datasets::MNIST(data_root, torch::data::datasets::MNIST::Mode::kTest)
                          .map(torch::data::transforms::Normalize<>(0.1307, 0.3081))
                          .map(torch::data::transforms::Stack<>());
  const size_t test_size = test_dataset.size().value();
  auto test_loader = torch::data::make_data_loader(std::move(test_dataset), 1000);
  torch::optim::SGD optimizer(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.5));
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    model.train();
    int64_t batch_idx = 0;
    for (auto& batch : *train_loader) {
      optimizer.zero_grad();
      auto output = model.forward(batch.data);
      auto loss = torch::nll_loss(output, batch.target);
      loss.backward();
      optimizer.step();
      if (batch_idx++ % 10 == 0)
        std::printf("\rTrain Epoch: %ld [%5ld/%5ld] Loss: %.4f", static_cast<long>(epoch),
                    static_cast<long>(batch_idx * batch.data.size(0)), static_cast<long>(train_size),
                    loss.template item<float>());
      if (max_batches > 0 && batch_idx >= max_batches) break;
    }
    torch::NoGradGuard no_grad;
    model.eval();
    double test_loss = 0;
    int64_t correct = 0;
    for (const auto& batch : *test_loader) {
      auto output = model.forward(batch.data);
      test_loss += torch::nll_loss(output, batch.target, {}, at::Reduction::Sum).template item<float>();
      correct += output.argmax(1).eq(batch.target).sum().template item<int64_t>();
    }
    std::printf("\nTest set: Average loss: %.4f | Accuracy: %.3f\n", test_loss / test_size,
                static_cast<double>(correct) / test_size);
  }
}
