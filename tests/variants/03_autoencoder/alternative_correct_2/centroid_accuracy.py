def centroid_accuracy(Z_train, y_train, Z_test, y_test, n_classes=10):
    """The same three calls, spelled out with keywords."""
    centres = class_centroids(Z=Z_train, y=y_train, n_classes=n_classes)
    predicted = nearest_centroid_predict(Z_test, centroids=centres)
    return accuracy(predicted, y_test)
