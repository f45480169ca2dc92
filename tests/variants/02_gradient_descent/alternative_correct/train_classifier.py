def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    """Same recipe, other spellings: sigmoid >= 0.5, model.zero_grad(), counting correct points."""
    device = x_train.device
    model = nn.Linear(in_features=2, out_features=1)
    model = model.to(device)
    criterion = nn.BCEWithLogitsLoss(reduction="mean")
    sgd = torch.optim.SGD(params=[model.weight, model.bias], lr=lr, momentum=0.0)
    loss_log, acc_log = [], []
    for epoch in range(max_epoch):
        model.eval()
        with torch.no_grad():
            p = torch.sigmoid(model(x_test)).squeeze(1)
            correct = ((p >= 0.5).long() == y_test.squeeze(1).long()).sum()
            acc_log.append(correct.item() / x_test.shape[0])
        model.train()
        model.zero_grad(set_to_none=False)
        out = model(x_train)
        loss = criterion(out, y_train)
        loss.backward()
        sgd.step()
        loss_log.append(float(loss.detach()))
    return model, loss_log, acc_log
