# Python twin of ../mmocr_textrecog_adamw_cos_10e.yaml
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(
    type='AdamW', lr=4e-4, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=10, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=10, eta_min=4e-6, convert_to_iter_based=True)]
