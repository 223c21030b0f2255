# Chapter 6 of "Deep Learning from Scratch", section 6.4.3: the overfitting network with Dropout
# (ratio 0.2), trained by the Trainer.  The book's script with its imports switched to gpunn.textbook.
import os
import sys
sys.path.append(os.pardir)
import numpy as np
import matplotlib.pyplot as plt
from gpunn.textbook.mnist import load_mnist
from gpunn.textbook.multi_layer_net_extend import MultiLayerNetExtend
from gpunn.textbook.trainer import Trainer

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)

# few training digits, to overfit
x_train = x_train[:300]
t_train = t_train[:300]

# dropout on or off, and its ratio
use_dropout = True  # False: no dropout
dropout_ratio = 0.2

network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100],
                              output_size=10, use_dropout=use_dropout, dropout_ration=dropout_ratio)
trainer = Trainer(network, x_train, t_train, x_test, t_test,
                  epochs=301, mini_batch_size=100,
                  optimizer='sgd', optimizer_param={'lr': 0.01}, verbose=True)
trainer.train()

train_acc_list, test_acc_list = trainer.train_acc_list, trainer.test_acc_list

# train and test accuracy per epoch
markers = {'train': 'o', 'test': 's'}
x = np.arange(len(train_acc_list))
plt.plot(x, train_acc_list, marker='o', label='train', markevery=10)
plt.plot(x, test_acc_list, marker='s', label='test', markevery=10)
plt.xlabel("epochs")
plt.ylabel("accuracy")
plt.ylim(0, 1.0)
plt.legend(loc='lower right')
plt.show()
