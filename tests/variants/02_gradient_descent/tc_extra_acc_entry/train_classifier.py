def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    """Also appends the final model's accuracy: acc_log has max_epoch + 1 entries."""
    model = nn.Linear(2, 1).to(x_train.device)
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_log, acc_log = [], []

    def test_accuracy():
        with torch.no_grad():
            predicted = (model(x_test) > 0).float()
            return (predicted == y_test).float().mean().item()

    for _ in range(max_epoch):
        acc_log.append(test_accuracy())
        optimizer.zero_grad()
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        loss_log.append(loss.item())
    acc_log.append(test_accuracy())
    return model, loss_log, acc_log
