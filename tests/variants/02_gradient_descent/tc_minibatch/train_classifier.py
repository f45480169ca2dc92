def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    """Mini-batches of 32 shuffled points per step instead of one full-batch step per epoch."""
    model = nn.Linear(2, 1).to(x_train.device)
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_log, acc_log = [], []
    for _ in range(max_epoch):
        with torch.no_grad():
            predicted = (model(x_test) > 0).float()
            acc_log.append((predicted == y_test).float().mean().item())
        for idx in torch.randperm(len(x_train), device=x_train.device).split(32):
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        loss_log.append(loss.item())
    return model, loss_log, acc_log
