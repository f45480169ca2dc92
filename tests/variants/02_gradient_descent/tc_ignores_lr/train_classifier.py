def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    """SGD with a fixed lr = 0.1 whatever lr is given."""
    model = nn.Linear(2, 1).to(x_train.device)
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_log, acc_log = [], []
    for _ in range(max_epoch):
        with torch.no_grad():
            predicted = (model(x_test) > 0).float()
            acc_log.append((predicted == y_test).float().mean().item())
        optimizer.zero_grad()
        loss = loss_fn(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        loss_log.append(loss.item())
    return model, loss_log, acc_log
