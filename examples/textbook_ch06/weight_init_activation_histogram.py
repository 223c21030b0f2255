# Chapter 6 of "Deep Learning from Scratch", section 6.2.2: histograms of the activations of five
# layers for one choice of initial weights.  The book's script imports nothing from common/ -- it is
# plain NumPy -- so it runs unchanged (and does not use gpunn).
import numpy as np
import matplotlib.pyplot as plt


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def ReLU(x):
    return np.maximum(0, x)


def tanh(x):
    return np.tanh(x)

input_data = np.random.randn(1000, 100)  # 1000 samples
node_num = 100  # neurons per hidden layer
hidden_layer_size = 5  # five hidden layers
activations = {}  # the outputs of each layer

x = input_data

for i in range(hidden_layer_size):
    if i != 0:
        x = activations[i-1]

    # try other scales here: sqrt(1/n), 0.01, 1
    w = np.random.randn(node_num, node_num) * np.sqrt(2.0 / node_num)
    # w = np.random.randn(node_num, node_num) * np.sqrt(1.0 / node_num)
    # w = np.random.randn(node_num, node_num) * 0.01

    a = np.dot(x, w)
    z = ReLU(a)  # or tanh(a), sigmoid(a)
    activations[i] = z

# one histogram per layer
for i, a in activations.items():
    plt.subplot(1, len(activations), i+1)
    plt.title(str(i+1) + "-layer")
    if i != 0: plt.yticks([], [])
    plt.ylim(0, 7000)
    plt.hist(a.flatten(), 30, range=(0,1))
plt.show()
