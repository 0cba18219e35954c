import os, collections
root = 'tests/bad_input'
BASE = collections.OrderedDict([
 ('', {}),
 ('data', {'format': '"jsonl"', 'train': '"../data/good.jsonl"', 'test': '"../data/good.jsonl"', 'valid_fraction': '0.2', 'max_len': '24'}),
 ('teacher', {'layers': '1', 'hidden': '16', 'heads': '2', 'epochs': '1', 'batch_size': '8'}),
 ('teacher.pretrain', {}),
 ('student', {'embedding_dim': '16', 'hidden': '16', 'fc_hidden': '16', 'epochs': '1', 'batch_size': '8'}),
 ('distill', {'alpha': '0.5'}),
 ('distill.augment', {}),
 ('baseline', {}),
 ('report', {'timing_batch': '8', 'timing_repeats': '1'}),
 ('runtime', {'backend': '"cpu"'}),
 ('sweep', {}),
])
def recipe(over, raw_extra=''):
    secs = collections.OrderedDict((k, dict(v)) for k, v in BASE.items())
    for k, v in over.items():
        sec, _, key = k.rpartition('.')
        if k.startswith('teacher.pretrain.'):
            sec, key = 'teacher.pretrain', k[len('teacher.pretrain.'):]
        elif k.startswith('distill.augment.'):
            sec, key = 'distill.augment', k[len('distill.augment.'):]
        elif k.startswith('sweep.'):
            sec, key = 'sweep', k[len('sweep.'):]
        secs.setdefault(sec, {})
        if v is None:
            secs[sec].pop(key, None)
        else:
            secs[sec][key] = v
    out = []
    for sec, kv in secs.items():
        if sec:
            if not kv:
                continue
            out.append(f'\n[{sec}]')
        for k, v in kv.items():
            out.append(f'{k} = {v}')
    return '\n'.join(out).lstrip('\n') + '\n' + raw_extra

C = []
def case(name, expect, over=None, sets=(), key=None, raw=''):
    C.append((name, expect, over or {}, sets, key, raw))

P = 'teacher.pretrain.'
# [distill]
case('distill_alpha_above_one', 'alpha in [0, 1] when distill.soft_weight is left out', {'distill.alpha': '1.5'}, key='distill.alpha')
case('distill_alpha_negative', 'a weight ≥ 0', {'distill.alpha': '-0.1'}, key='distill.alpha')
case('distill_alpha_nan', 'a weight ≥ 0, found NaN', {'distill.alpha': 'nan'}, key='distill.alpha')
case('distill_soft_weight_negative', 'leave it out for 1 − alpha', {'distill.soft_weight': '-1.0'}, key='distill.soft_weight')
case('distill_no_loss', 'the distilled student needs a loss', {'distill.alpha': '0.0', 'distill.soft_weight': '0.0'}, key='distill.alpha')
case('distill_temperature_zero', 'a positive number, found 0', {'distill.temperature': '0.0'}, key='distill.temperature')
case('distill_temperature_inf', 'a positive number, found inf', {'distill.temperature': 'inf'}, key='distill.temperature')
case('augment_p_mask_above_one', 'a probability in [0, 1], found 1.5', {'distill.augment.p_mask': '1.5'}, key='distill.augment.p_mask')
case('augment_p_pos_negative', 'a probability in [0, 1], found -0.1', {'distill.augment.p_pos': '-0.1'}, key='distill.augment.p_pos')
case('augment_p_ng_two', 'a probability in [0, 1], found 2', {'distill.augment.p_ng': '2.0'}, key='distill.augment.p_ng')
case('augment_p_mask_plus_p_pos', 'p_mask + p_pos ≤ 1', {'distill.augment.p_mask': '0.6', 'distill.augment.p_pos': '0.6'}, key='distill.augment.p_pos')
case('augment_n_iter_negative', 'a whole number ≥ 0, found the whole number -1', {'distill.augment.n_iter': '-1'}, key='distill.augment.n_iter')
case('distill_soft_loss_unknown', 'expected one of "mse", "kl"', {'distill.soft_loss': '"kld"'}, key='distill.soft_loss')
# [data]
case('data_valid_fraction_zero', 'a fraction in (0, 0.5], found 0', {'data.valid_fraction': '0.0'}, key='data.valid_fraction')
case('data_valid_fraction_high', 'a fraction in (0, 0.5], found 0.9', {'data.valid_fraction': '0.9'}, key='data.valid_fraction')
case('data_max_len_small', 'an integer in 4..=512, found 2', {'data.max_len': '2'}, key='data.max_len')
case('data_max_len_huge', 'an integer in 4..=512, found 10000', {'data.max_len': '10000'}, key='data.max_len')
case('data_min_count_zero', 'an integer ≥ 1, found 0', {'data.min_count': '0'}, key='data.min_count')
case('data_classes_twice', '"car" twice', {'data.classes': '["car", "game", "car"]'}, key='data.classes')
case('data_classes_empty_name', 'no empty ones', {'data.classes': '["car", " "]'}, key='data.classes')
case('data_max_per_class_one', 'at least 2', {'data.max_per_class': '1'}, key='data.max_per_class')
case('data_text_field_empty', 'a field or column name', {'data.text_field': '""'}, key='data.text_field')
case('data_same_fields', 'a label field other than the text field', {'data.text_field': '"label"'}, key='data.label_field')
case('data_format_unknown', 'expected one of "tnews", "jsonl", "csv"', {'data.format': '"jsonlines"'}, key='data.format')
case('data_on_error_unknown', 'expected one of "fail", "skip"', {'data.on_error': '"ignore"'}, key='data.on_error')
case('data_lowercase_string', 'expected true or false, found the string "yes"', {'data.lowercase': '"yes"'}, key='data.lowercase')
case('data_classes_not_a_list', 'expected a list, found the string "car"', {'data.classes': '"car"'}, key='data.classes')
case('data_seed_negative', 'expected a whole number ≥ 0, found the whole number -7', {'data.seed': '-7'}, key='data.seed')
case('data_class_not_in_files', 'no class `weather`', {'data.classes': '["car", "weather"]'}, key='data.classes')
# [teacher]
case('teacher_layers_zero', 'an integer ≥ 1, found 0', {'teacher.layers': '0'}, key='teacher.layers')
case('teacher_hidden_zero', 'an integer ≥ 1, found 0', {'teacher.hidden': '0'}, key='teacher.hidden')
case('teacher_heads_not_dividing', 'divides teacher.hidden', {'teacher.heads': '3'}, key='teacher.heads')
case('teacher_intermediate_zero', 'leave it out for 4 × teacher.hidden', {'teacher.intermediate': '0'}, key='teacher.intermediate')
case('teacher_epochs_zero', 'an integer ≥ 1, found 0', {'teacher.epochs': '0'}, key='teacher.epochs')
case('teacher_epochs_string', 'expected a whole number ≥ 0, found the string "three"', {'teacher.epochs': '"three"'}, key='teacher.epochs')
case('teacher_epochs_float', 'expected a whole number ≥ 0, found the number 2.5', {'teacher.epochs': '2.5'}, key='teacher.epochs')
case('teacher_lr_zero', 'a positive number, found 0', {'teacher.lr': '0.0'}, key='teacher.lr')
case('teacher_lr_negative', 'a positive number, found -0.001', {'teacher.lr': '-1e-3'}, key='teacher.lr')
case('teacher_lr_string', 'expected a number, found the string "fast"', {'teacher.lr': '"fast"'}, key='teacher.lr')
case('teacher_batch_size_zero', 'an integer ≥ 1, found 0', {'teacher.batch_size': '0'}, key='teacher.batch_size')
case('teacher_warmup_one', 'a fraction in [0, 1), found 1', {'teacher.warmup': '1.0'}, key='teacher.warmup')
case('teacher_dropout_one', 'a probability in [0, 1), found 1', {'teacher.dropout': '1.0'}, key='teacher.dropout')
case('teacher_weight_decay_negative', 'a number ≥ 0, found -0.1', {'teacher.weight_decay': '-0.1'}, key='teacher.weight_decay')
case('teacher_freeze_zero', 'with 1 ≤ K ≤ the number of layers', {'teacher.freeze': '{ all-but-last = 0 }'}, key='teacher.freeze')
case('teacher_freeze_too_many', 'found K = 5', {'teacher.freeze': '{ all-but-last = 5 }'}, key='teacher.freeze')
case('teacher_arch_unknown', 'expected one of "bert", "xlnet"', {'teacher.arch': '"gpt"'}, key='teacher.arch')
case('teacher_not_a_table', 'expected a table, found the whole number 3', {}, raw='', key='teacher')
case('teacher_key_typo', 'did you mean `teacher.epochs`', {'teacher.epocs': '3'}, key='teacher.epocs')
case('teacher_checkpoint_missing', 'not found', {'teacher.checkpoint': '"../data/no_such_checkpoint"'}, key='teacher.checkpoint')
case('teacher_checkpoint_is_file', 'a file, not a folder', {'teacher.checkpoint': '"../data/good.jsonl"'}, key='teacher.checkpoint')
case('teacher_checkpoint_no_config', 'a folder without config.json', {'teacher.checkpoint': '"../data/empty_checkpoint"'}, key='teacher.checkpoint')
case('teacher_checkpoint_other_arch', 'expected "bert" (the architecture of the checkpoint', {'teacher.arch': '"xlnet"', 'teacher.checkpoint': '"../../fixtures/bert-tiny-cls"'}, key='teacher.arch')
case('teacher_checkpoint_max_len', "at most 64 (the checkpoint's positions), found 100", {'teacher.checkpoint': '"../data/bert_checkpoint"', 'data.max_len': '100'}, key='data.max_len')
# a checkpoint folder without a tokenizer kdrun reads (the fixture has none), or whose tokenizer
# lacks a role kdrun needs
case('teacher_checkpoint_no_tokenizer', 'bert-tiny-cls: no tokenizer.json or vocab.txt (a checkpoint folder holds one of them)', {'teacher.checkpoint': '"../../fixtures/bert-tiny-cls"'}, key='teacher.checkpoint')
case('teacher_checkpoint_no_cls_token', 'no_cls_checkpoint: the tokenizer has no classification token ([CLS] or <cls> or <s>)', {'teacher.checkpoint': '"../data/no_cls_checkpoint"'}, key='teacher.checkpoint')
# an ensemble's members' checkpoints are checked as a lone teacher's, named by member
MEMBER = lambda arch, ck: f'\n[[teacher.members]]\narch = "{arch}"\n' + (f'checkpoint = "{ck}"\n' if ck else '')
case('member_checkpoint_other_arch', 'member 2: expected "bert" (the architecture of the checkpoint', {}, key='teacher.members[1].arch', raw=MEMBER('bert', '../data/bert_checkpoint') + MEMBER('xlnet', '../data/bert_checkpoint'))
case('member_checkpoint_no_tokenizer', 'fixtures/bert-tiny-cls: no tokenizer.json or vocab.txt', {}, key='teacher.members[1].checkpoint', raw=MEMBER('linear', None) + MEMBER('bert', '../../fixtures/bert-tiny-cls'))
case('member_checkpoint_no_cls_token', 'no_cls_checkpoint: the tokenizer has no classification token', {}, key='teacher.members[0].checkpoint', raw=MEMBER('bert', '../data/no_cls_checkpoint') + MEMBER('linear', None))
# ensemble-only keys where they have no effect
case('teacher_combine_no_members', 'found a single teacher (teacher.members = [])', {'teacher.members': '[]', 'teacher.combine': '"logits"'}, key='teacher.combine')
case('teacher_calibrate_no_members', 'found a single teacher (no [[teacher.members]])', {'teacher.calibrate': 'false'}, key='teacher.calibrate')
case('member_combine', 'found it inside member 1', {}, key='teacher.members[0].combine', raw=MEMBER('linear', None) + 'combine = "logits"\n' + MEMBER('linear', None))
case('teacher_weight_on_ensemble', 'found it on [teacher] beside [[teacher.members]]', {'teacher.weight': '2.0'}, key='teacher.weight', raw=MEMBER('linear', None) + MEMBER('linear', None))
# [teacher.pretrain]
ON = {P + 'steps': '10'}
def pre(name, expect, over, key):
    o = dict(ON); o.update(over); case(name, expect, o, key=key)
pre('pretrain_mask_prob_one', 'a probability in (0, 1), found 1', {P + 'mask_prob': '1.0'}, 'teacher.pretrain.mask_prob')
pre('pretrain_lr_zero', 'a positive number, found 0', {P + 'lr': '0.0'}, 'teacher.pretrain.lr')
pre('pretrain_batch_size_zero', 'an integer ≥ 1, found 0', {P + 'batch_size': '0'}, 'teacher.pretrain.batch_size')
pre('pretrain_warmup_high', 'a fraction in [0, 1), found 1.5', {P + 'warmup': '1.5'}, 'teacher.pretrain.warmup')
pre('pretrain_holdout_zero', 'a fraction in (0, 0.5], found 0', {P + 'holdout': '0.0'}, 'teacher.pretrain.holdout')
pre('pretrain_weight_decay_negative', 'a number ≥ 0, found -1', {P + 'weight_decay': '-1.0'}, 'teacher.pretrain.weight_decay')
pre('pretrain_plm_key_on_bert', 'a permutation-LM key', {P + 'plm_probability': '0.2'}, 'teacher.pretrain.plm_probability')
pre('pretrain_objective_plm_on_bert', '"mlm" for a bert teacher', {P + 'objective': '"plm"'}, 'teacher.pretrain.objective')
pre('pretrain_mlm_key_on_xlnet', 'a masked-LM key', {'teacher.arch': '"xlnet"', P + 'mask_prob': '0.2'}, 'teacher.pretrain.mask_prob')
pre('pretrain_plm_probability_zero', 'a share in (0, 1], found 0', {'teacher.arch': '"xlnet"', P + 'plm_probability': '0.0'}, 'teacher.pretrain.plm_probability')
pre('pretrain_max_span_zero', 'an integer ≥ 1, found 0', {'teacher.arch': '"xlnet"', P + 'max_span_length': '0'}, 'teacher.pretrain.max_span_length')
pre('pretrain_extra_missing', 'no_such.txt (not found)', {P + 'extra': '["../data/no_such.txt"]'}, 'teacher.pretrain.extra')
pre('pretrain_extra_folder', 'a folder, not a file', {P + 'extra': '["../data/empty_checkpoint"]'}, 'teacher.pretrain.extra')
pre('pretrain_steps_string', 'expected a whole number ≥ 0, found the string "ten"', {P + 'steps': '"ten"'}, 'teacher.pretrain.steps')
# [student]
for k in ['embedding_dim', 'hidden', 'fc_hidden', 'epochs', 'batch_size']:
    case(f'student_{k}_zero', 'an integer ≥ 1, found 0', {f'student.{k}': '0'}, key=f'student.{k}')
case('student_lr_zero', 'a positive number, found 0', {'student.lr': '0.0'}, key='student.lr')
case('student_lr_inf', 'a positive number, found inf', {'student.lr': 'inf'}, key='student.lr')
case('student_warmup_negative', 'a fraction in [0, 1), found -0.5', {'student.warmup': '-0.5'}, key='student.warmup')
case('student_dropout_one', 'a probability in [0, 1), found 1', {'student.dropout': '1.0'}, key='student.dropout')
case('student_weight_decay_inf', 'a number ≥ 0, found inf', {'student.weight_decay': 'inf'}, key='student.weight_decay')
case('student_head_typo', 'did you mean "tang"', {'student.head': '"tangg"'}, key='student.head')
case('student_vectors_missing', 'no_such.vec (not found)', {'student.vectors': '"../data/no_such.vec"'}, key='student.vectors')
case('student_vectors_folder', 'a folder, not a file', {'student.vectors': '"../data/empty_checkpoint"'}, key='student.vectors')
case('student_vectors_cut_short', 'the header promises 10 vectors, the file has 3', {'student.vectors': '"../data/short.vec"'}, key='student.vectors')
case('student_vectors_dim_mismatch', 'expected 4 (the dimension of', {'student.vectors': '"../data/dim4.vec"'}, key='student.embedding_dim')
case('student_vectors_bad_header', 'expected a word2vec header `N D`', {'student.vectors': '"../data/bad_header.vec"'}, key='student.vectors')
# found by tests/fuzz.rs
case('student_vectors_binary_more', 'more_entries.bin: the header promises 2 vectors, the file has 3', {'student.vectors': '"../data/more_entries.bin"'}, key='student.vectors')
case('student_vectors_huge_dim', 'huge_dim.bin:1: the header gives a dimension of 9223372036854775807', {'student.vectors': '"../data/huge_dim.bin"'}, key='student.vectors')
case('set_very_long_path', 'bytes in all)', {}, sets=['data.train=../data/' + '長' * 3000 + '.jsonl'], key='data.train')
case('teacher_checkpoint_cut_short', 'model.safetensors: cut short: tensor `', {'teacher.checkpoint': '"../data/cut_checkpoint"'}, key='teacher.checkpoint')
case('student_vectors_wrong_width', ':3: expected a token and 16 values', {'student.vectors': '"../data/wrong_width.vec"'}, key='student.vectors')
# [baseline]
case('baseline_char_ngrams_reversed', '1 ≤ min ≤ max', {'baseline.char_ngrams': '[2, 1]'}, key='baseline.char_ngrams')
case('baseline_word_ngrams_zero', '1 ≤ min ≤ max', {'baseline.word_ngrams': '[0, 2]'}, key='baseline.word_ngrams')
case('baseline_char_ngrams_three', 'found [1, 2, 3]', {'baseline.char_ngrams': '[1, 2, 3]'}, key='baseline.char_ngrams')
case('baseline_no_ngrams', 'both are []', {'baseline.char_ngrams': '[]'}, key='baseline.char_ngrams')
case('baseline_min_df_zero', 'an integer ≥ 1, found 0', {'baseline.min_df': '0'}, key='baseline.min_df')
case('baseline_c_empty', 'a non-empty list of positive numbers', {'baseline.c': '[]'}, key='baseline.c')
case('baseline_c_negative', 'found [-1.0]', {'baseline.c': '[-1.0]'}, key='baseline.c')
case('baseline_model_unknown', 'expected one of "logreg", "svm"', {'baseline.model': '"tree"'}, key='baseline.model')
# [report] / [runtime] / name
case('report_timing_batch_zero', 'an integer ≥ 1, found 0', {'report.timing_batch': '0'}, key='report.timing_batch')
case('report_timing_repeats_zero', 'an integer ≥ 1, found 0', {'report.timing_repeats': '0'}, key='report.timing_repeats')
case('report_templates_missing', 'report.templates', {'report.templates': '"../data/no_templates"'}, key='report.templates')
case('report_select_unknown', 'expected one of "distilled", "student", "teacher", "baseline", "textgcn", "textgcn_distilled", "kd_gain"', {'report.select': '"test_accuracy"'}, key='report.select')
case('report_select_model_not_trained', 'a model the recipe trains (enable it, or choose another), found "textgcn"', {'report.select': '"textgcn"'}, key='report.select')
case('runtime_backend_unknown', 'expected one of "auto", "wgpu", "cpu"', {'runtime.backend': '"cuda"'}, key='runtime.backend')
case('runtime_threads_negative', 'a whole number ≥ 0, found the whole number -2', {'runtime.threads': '-2'}, key='runtime.threads')
case('runtime_jobs_zero', 'an integer ≥ 1 (sweep trials at once', {'runtime.jobs': '0'}, key='runtime.jobs')
case('slurm_time_bad', 'a Slurm time limit such as "90" (minutes), "2:00:00" or "1-12:00:00", found "2h"', {'runtime.slurm.time': '"2h"'}, key='runtime.slurm.time')
case('slurm_time_four_parts', 'found "1:00:00:00"', {'runtime.slurm.time': '"1:00:00:00"'}, key='runtime.slurm.time')
case('slurm_partition_space', 'a name without white space or quotes', {'runtime.slurm.partition': '"gpu a100"'}, key='runtime.slurm.partition')
case('slurm_mem_bad', 'a memory size such as "16G"', {'runtime.slurm.mem': '"16GB"'}, key='runtime.slurm.mem')
case('slurm_option_kdrun_sets', 'kdrun sets those), found "--dependency=afterok:1"', {'runtime.slurm.sbatch_options': '["--qos=high", "--dependency=afterok:1"]'}, key='runtime.slurm.sbatch_options')
case('slurm_option_not_an_option', 'sbatch options such as "--qos=high"', {'runtime.slurm.sbatch_options': '["qos=high"]'}, key='runtime.slurm.sbatch_options')
case('slurm_setup_two_lines', 'one per list item', {'runtime.slurm.setup': '["module load a\\nmodule load b"]'}, key='runtime.slurm.setup')
case('slurm_typo', 'did you mean `runtime.slurm.gpus_per_task`', {'runtime.slurm.gpu_per_task': '1'}, key='runtime.slurm.gpu_per_task')
case('slurm_time_negative', 'a whole number of minutes, found the whole number -5', {'runtime.slurm.time': '-5'}, key='runtime.slurm.time')
case('slurm_gpus_negative', 'a whole number ≥ 0, found the whole number -1', {'runtime.slurm.gpus_per_task': '-1'}, key='runtime.slurm.gpus_per_task')
case('name_with_slash', 'it holds a path separator', {'name': '"a/b"'}, key='name')
case('name_with_dot', 'it starts with `.`', {'name': '".hidden"'}, key='name')
case('name_with_nul', 'a\\0b', {'name': '"a\\u0000b"'}, key='name')
case('name_with_colon', 'not allowed in Windows folder names', {'name': '"run:1"'}, key='name')
case('name_too_long', '… (300 characters)', {'name': '"' + 'n' * 300 + '"'}, key='name')
case('name_stages', 'the store\'s stage folder', {'name': '"stages"'}, key='name')
case('name_spaces', 'white space', {'name': '" run "'}, key='name')
case('top_level_typo', 'did you mean `teacher`', {'teachr.epochs': '3'}, key='teachr')
# [sweep]
case('sweep_alpha_out_of_range', '([sweep] table)', {'sweep."distill.alpha"': '[0.5, 1.5]'}, key='distill.alpha')
case('sweep_unknown_key', 'did you mean `teacher.epochs`', {'sweep."teacher.epocs"': '[1, 2]'}, key='teacher.epocs')
case('sweep_zip_unequal', 'pairs lists of equal length', {'sweep.mode': '"zip"', 'sweep."teacher.epochs"': '[1, 2]', 'sweep."student.epochs"': '[1, 2, 3]'}, key='sweep')
case('sweep_no_values', 'has no values', {'sweep."teacher.epochs"': '[]'}, key='sweep')
case('sweep_of_sweep', 'a sweep cannot sweep the sweep', {'sweep."sweep.mode"': '["zip"]'}, key='sweep.mode')
case('sweep_over_runtime_threads', 'a sweep cannot vary runtime.threads', {'sweep."runtime.threads"': '[1, 2]'}, key='runtime.threads')
case('sweep_over_store', 'a sweep cannot vary runtime.store', {}, sets=['runtime.store=a,b'], key='runtime.store')
# --set
case('set_lr_zero', '--set teacher.lr=0', {}, sets=['teacher.lr=0'], key='teacher.lr')
case('sweep_too_many_trials', 'at most 10000: sweep fewer values', {}, sets=[f'{k}=1,2,3,4,5,6,7,8,9,10' for k in ['teacher.epochs', 'student.epochs', 'teacher.batch_size', 'student.batch_size', 'runtime.seed']], key='sweep')
case('set_sweep_bad_value', 'distill.alpha', {}, sets=['distill.alpha=0.5,2'], key='distill.alpha')
# data files
def data(name, expect, over, key):
    case(name, expect, over, key=key)
T = lambda f: {'data.train': f'"../data/{f}"'}
data('data_train_missing', 'was not found', T('no_such.jsonl'), 'data.train')
data('data_train_folder', 'found a folder', T('a_folder.jsonl'), 'data.train')
data('data_json_array', 'a JSON array, expected JSON lines', T('array.jsonl'), 'data.train')
data('data_bad_json_line', 'bad_json_line3.jsonl:3: not a JSON object', T('bad_json_line3.jsonl'), 'data.train')
data('data_line_is_list', ':2: not a JSON object: found a list', T('line_is_list.jsonl'), 'data.train')
data('data_no_text_field', ':2: no string field `text` (data.text_field); fields here: body, label', T('no_text_field.jsonl'), 'data.train')
data('data_text_is_number', ':2: no string field `text` (data.text_field): found a number', T('text_is_number.jsonl'), 'data.train')
data('data_empty_text', ':4: empty text in `text`', T('empty_text.jsonl'), 'data.train')
data('data_blank_text', ':4: empty text in `text`: "  \\t "', T('blank_text.jsonl'), 'data.train')
data('data_no_label', ':2: no label field `label`', T('no_label.jsonl'), 'data.train')
data('data_null_label', ':2: no label field `label` (data.label_field): found null', T('null_label.jsonl'), 'data.train')
data('data_tnews_no_desc', ':2: TNEWS line without a string `label_desc`', {'data.format': '"tnews"', 'data.train': '"../data/tnews_no_desc.json"', 'data.test': '"../data/good_tnews.json"'}, 'data.train')
data('data_nul_in_line', 'a\\0b', T('nul_in_line.jsonl'), 'data.train')
data('data_long_bad_line', '… (', T('long_bad_line.jsonl'), 'data.train')
data('data_not_utf8', ':2: not UTF-8 text', T('not_utf8.jsonl'), 'data.train')
data('data_empty_file', 'no examples (empty file)', T('empty.jsonl'), 'data.train')
data('data_only_blank_lines', 'no examples (empty file)', T('only_blank.jsonl'), 'data.train')
data('data_all_rows_bad_skip', 'no examples left (2 rows, all bad', dict(T('all_bad.jsonl'), **{'data.on_error': '"skip"'}), 'data.train')
data('data_test_label_stranger', 'stranger_label.jsonl:19: label "weather" is not a class of the training file', {'data.test': '"../data/stranger_label.jsonl"'}, 'data.test')
data('data_class_with_one_example', 'class `weather` has 1 training example(s)', T('one_of_a_class.jsonl'), 'data.train')
data('data_test_folder', 'expected a test data file, found a folder', {'data.test': '"../data/a_folder.jsonl"'}, 'data.test')
CSV = lambda f: {'data.format': '"csv"', 'data.train': f'"../data/{f}"', 'data.test': '"../data/good.csv"'}
data('csv_no_text_column', 'no column `text` (data.text_field); columns: body, label', CSV('no_text_column.csv'), 'data.train')
data('csv_empty_cell', 'empty_cell.csv:3: empty text in `text`', CSV('empty_cell.csv'), 'data.train')
# rows named by their physical line, not their example index
data('data_bad_after_blank_lines', 'bad_after_blank_lines.jsonl:7: empty text in `text`', T('bad_after_blank_lines.jsonl'), 'data.train')
data('data_bad_after_bom', 'bad_bom.jsonl:2: no label field `label` (data.label_field); fields here: text', T('bad_bom.jsonl'), 'data.train')
data('data_test_stranger_after_blank_lines', 'stranger_after_blank_lines.jsonl:22: label "weather" is not a class', {'data.test': '"../data/stranger_after_blank_lines.jsonl"'}, 'data.test')
data('csv_bad_after_quoted_newline', 'bad_after_quoted_newline.csv:6: empty text in `text`', CSV('bad_after_quoted_newline.csv'), 'data.train')
data('csv_too_many_fields', 'too_many_fields.csv:5: cannot read CSV: 3 fields, the header has 2', CSV('too_many_fields.csv'), 'data.train')
data('csv_unclosed_quote', 'unclosed_quote.csv:4: cannot read CSV: a quote opened in this row is never closed', CSV('unclosed_quote.csv'), 'data.train')
data('csv_bad_after_bom_crlf', 'bad_bom_crlf.csv:4: empty label in `label`', CSV('bad_bom_crlf.csv'), 'data.train')
data('csv_header_only', 'no examples (header only)', CSV('header_only.csv'), 'data.train')

cdir = root + '/cases'
for f in os.listdir(cdir):
    os.remove(os.path.join(cdir, f))
for name, expect, over, sets, key, raw in C:
    head = f'# expect: {expect}\n'
    if key: head += f'# key: {key}\n'
    for s in sets: head += f'# set: {s}\n'
    body = recipe(over, raw)
    if name == 'teacher_not_a_table':
        body = body.replace('[teacher]\nlayers = 1\nhidden = 16\nheads = 2\nepochs = 1\nbatch_size = 8\n', '')
        body = 'teacher = 3\n' + body
    open(f'{cdir}/{name}.toml', 'w').write(head + body)
print(len(C))

# valid but awkward
odir = root + '/ok'
for f in os.listdir(odir):
    os.remove(os.path.join(odir, f))
OK = [
 ('bom', T('ok_bom.jsonl'), 18, 0),
 ('crlf', T('ok_crlf.jsonl'), 18, 0),
 ('blank_lines', T('ok_blank_lines.jsonl'), 18, 0),
 ('duplicate_ids', T('ok_dup_ids.jsonl'), 18, 0),
 ('long_line', T('ok_long_line.jsonl'), 19, 0),
 ('float_labels', {'data.train': '"../data/ok_float_labels.jsonl"', 'data.test': '"../data/ok_float_labels.jsonl"'}, 18, 0),
 ('csv_quoted_newline', {'data.format': '"csv"', 'data.train': '"../data/ok_quoted_newline.csv"', 'data.test': '"../data/good.csv"'}, 19, 0),
 ('csv_bom_crlf', {'data.format': '"csv"', 'data.train': '"../data/ok_bom_crlf.csv"', 'data.test': '"../data/good.csv"'}, 18, 0),
 ('skip_bad_rows', dict(T('ok_skip_bad_rows.jsonl'), **{'data.on_error': '"skip"'}), 18, 3),
 ('skip_csv_rows', dict(CSV('skip_csv_rows.csv'), **{'data.on_error': '"skip"'}), 19, 2),
 ('skip_test_stranger', {'data.test': '"../data/stranger_label.jsonl"', 'data.on_error': '"skip"'}, 18, 1),
 ('tnews', {'data.format': '"tnews"', 'data.train': '"../data/good_tnews.json"', 'data.test': '"../data/good_tnews.json"'}, 18, 0),
 ('vectors', {'student.vectors': '"../data/good16.vec"'}, 18, 0),
 ('checkpoint', {'teacher.checkpoint': '"../data/bert_checkpoint"'}, 18, 0),
 ('ensemble_checkpoints', {'teacher.combine': '"logits"'}, 18, 0, MEMBER('bert', '../data/bert_checkpoint') + MEMBER('linear', None)),
 ('sweep', {'sweep."distill.alpha"': '[0.0, 0.5, 1.0]'}, 18, 0),
]
for name, over, n, skipped, *raw in OK:
    open(f'{odir}/{name}.toml', 'w').write(f'# examples: {n}\n# skipped: {skipped}\n' + recipe(over, ''.join(raw)))
print(len(OK))
