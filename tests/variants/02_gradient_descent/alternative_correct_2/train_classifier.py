def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    """inference_mode for the accuracy, set_to_none, gt/eq spellings, a step helper."""
    model = nn.Linear(2, 1)
    model.to(device=x_train.device)
    optimizer = torch.optim.SGD(model.parameters(), lr)
    bce = nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = bce(model(x_train), y_train)
        loss.backward()
        optimizer.step()
        return loss.detach().item()

    loss_log, acc_log = [], []
    for _ in range(max_epoch):
        with torch.inference_mode():
            hits = model(x_test).gt(0).to(y_test.dtype).eq(y_test)
            acc_log.append(hits.sum().item() / hits.numel())
        loss_log.append(step())
    return model, loss_log, acc_log
