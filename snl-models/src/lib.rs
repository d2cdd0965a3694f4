//! ResNet and WideResNet with SNL masks (filled in by the models issue).
