# Python twin of ../mmyolo_rtmdet_l_coco.yaml
base_lr = 0.004
max_epochs = 300
num_epochs_stage2 = 20
lr_start_factor = 1.0e-5
weight_decay = 0.05
save_checkpoint_intervals = 10
val_interval_stage2 = 1
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=base_lr, weight_decay=weight_decay),
                     paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0,
                                        bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=lr_start_factor, by_epoch=False, begin=0, end=1000),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=save_checkpoint_intervals,
                 dynamic_intervals=[(max_epochs - num_epochs_stage2, val_interval_stage2)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
