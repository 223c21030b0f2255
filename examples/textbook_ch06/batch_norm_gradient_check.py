# Chapter 6 of "Deep Learning from Scratch", section 6.3: backpropagation through Batch Normalization
# against numerical gradients, on one image.  The book's script with its imports switched to
# gpunn.textbook.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from gpunn.textbook.mnist import load_mnist
from gpunn.textbook.multi_layer_net_extend import MultiLayerNetExtend

# the data, with one-hot labels
(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)

network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100, 100], output_size=10,
                              use_batchnorm=True)

x_batch = x_train[:1]
t_batch = t_train[:1]

grad_backprop = network.gradient(x_batch, t_batch)
grad_numerical = network.numerical_gradient(x_batch, t_batch)


for key in grad_numerical.keys():
    diff = np.average( np.abs(grad_backprop[key] - grad_numerical[key]) )
    print(key + ":" + str(diff))
