# Python twin of ../mmocr_textrecog_adadelta_5e.yaml
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adadelta', lr=1.0))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [dict(type='ConstantLR', factor=1.0)]
