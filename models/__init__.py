"""What is learned: the Keras model zoo, training and evaluation, and the model registry."""
