# Cascade-CLIP with CLIP ViT-B/16. The class split (base_class, novel_class,
# both_class) comes from the dataset config; the segmentor fills the head's seen_idx, all_idx
# and num_classes from it.
custom_imports = dict(imports=['cascade_clip'], allow_failed_imports=False)
model = dict(
    type='CascadeCLIP',
    pretrained='clip_pretrain/ViT-B-16.pt',
    context_length=77,
    exclude_key='prompt',
    backbone=dict(
        type='VPTCLIPVisionTransformer',
        input_resolution=512,
        patch_size=16,
        width=768,
        layers=12,
        heads=12,
        output_dim=512,
        drop_path_rate=0.1,
        out_indices=[5, 6, 7, 8, 9, 10],
        get_embeddings=True,
        num_tokens=50,
        prompt_dim=768,
        total_d_layer=11,
        style='pytorch'),  # as in the published configs; accepted and unused (not a ResNet)
    text_encoder=dict(
        type='CLIPTextEncoder',
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
        embed_dim=512,
        style='pytorch'),
    decode_head=dict(
        type='ATMSingleHeadSeg',
        img_size=512,
        in_channels=512,
        channels=512,
        embed_dims=512,
        num_layers=3,
        num_heads=8,
        use_stages=7,
        use_proj=False,
        # which encoder levels feed which decoder (indices into out_indices; -1 = the last
        # layer's dense map): levels 0-2 and 3-5 with Gaussian weights, then the last layer
        # alone (the published layout)
        cascade_stages=[[0, 1, 2], [3, 4, 5], [-1]],
        loss_decode=dict(
            type='SegLossPlus', dec_layers=3, mask_weight=100.0, dice_weight=1.0,
            loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(426, 426), crop_batch=4))
