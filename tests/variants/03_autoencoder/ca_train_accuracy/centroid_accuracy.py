def centroid_accuracy(Z_train, y_train, Z_test, y_test, n_classes=10):
    """Scores the training points instead of the test points."""
    centroids = class_centroids(Z_train, y_train, n_classes)
    return accuracy(nearest_centroid_predict(Z_train, centroids), y_train)
