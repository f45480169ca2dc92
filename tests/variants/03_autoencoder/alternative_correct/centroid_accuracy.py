def centroid_accuracy(Z_train, y_train, Z_test, y_test, n_classes=10):
    predicted = nearest_centroid_predict(Z_test, class_centroids(Z_train, y_train, n_classes))
    return accuracy(predicted, y_test)
