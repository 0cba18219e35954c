import json, os
root = 'tests/bad_input'
D = root + '/data'
def w(name, content, mode='w'):
    p = os.path.join(D, name)
    if isinstance(content, bytes):
        open(p, 'wb').write(content)
    else:
        open(p, 'w', newline='').write(content)

classes = ['car', 'game', 'sports']
words = {'car': '汽车 油耗 新车', 'game': '游戏 更新 玩家', 'sports': '球队 进球 比赛'}
def rows(n=6, extra=None):
    out = []
    for i in range(n):
        for c in classes:
            out.append({'text': f'{words[c]} {i}', 'label': c})
    return out
def jl(rs): return ''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rs)
good = rows()
w('good.jsonl', jl(good))
tn = [{'label': str(100 + k), 'label_desc': 'news_' + c, 'sentence': f'{words[c]} {i}', 'keywords': ''}
      for i in range(6) for k, c in enumerate(classes)]
w('good_tnews.json', jl(tn))
w('good.csv', 'text,label\n' + ''.join(f'"{r["text"]}",{r["label"]}\n' for r in good))
# bad data files
w('array.jsonl', json.dumps(good, ensure_ascii=False, indent=1))
w('bad_json_line3.jsonl', jl(good[:2]) + '{"text": "x", "label": \n' + jl(good[2:]))
w('line_is_list.jsonl', jl(good[:1]) + '["a", "car"]\n' + jl(good[1:]))
w('no_text_field.jsonl', jl(good[:1]) + '{"body": "x", "label": "car"}\n' + jl(good[1:]))
w('text_is_number.jsonl', jl(good[:1]) + '{"text": 12, "label": "car"}\n' + jl(good[1:]))
w('empty_text.jsonl', jl(good[:3]) + '{"text": "", "label": "car"}\n' + jl(good[3:]))
w('blank_text.jsonl', jl(good[:3]) + '{"text": "  \\t ", "label": "car"}\n' + jl(good[3:]))
w('no_label.jsonl', jl(good[:1]) + '{"text": "x"}\n' + jl(good[1:]))
w('null_label.jsonl', jl(good[:1]) + '{"text": "x", "label": null}\n' + jl(good[1:]))
w('tnews_no_desc.json', jl(tn[:1]) + '{"label": "100", "sentence": "x"}\n' + jl(tn[1:]))
w('nul_in_line.jsonl', (jl(good[:1]) + '{"text": "a\x00b", "label": "car"}\n' + jl(good[1:])).encode())
w('long_bad_line.jsonl', jl(good[:1]) + '{"text": "' + 'x' * 200000 + '", "label": \n' + jl(good[1:]))
w('not_utf8.jsonl', jl(good[:1]).encode() + b'{"text": "\xff\xfe", "label": "car"}\n' + jl(good[1:]).encode())
w('empty.jsonl', '')
w('only_blank.jsonl', '\n  \n\n')
w('stranger_label.jsonl', jl(good + [{'text': '天气 晴朗', 'label': 'weather'}]))
w('one_of_a_class.jsonl', jl(good + [{'text': '天气 晴朗', 'label': 'weather'}]))
w('no_text_column.csv', 'body,label\nx,car\n')
w('empty_cell.csv', 'text,label\n"a b",car\n"",car\n' + ''.join(f'"{r["text"]}",{r["label"]}\n' for r in good))
w('header_only.csv', 'text,label\n')
# bad rows whose example index is not their line: named by the physical line, as an editor counts
# (blank lines, a byte order mark on line 1, a CSV header and the lines of a quoted field)
w('bad_after_blank_lines.jsonl', '\n' + jl(good[:2]) + '\n\n  \n{"text": "", "label": "car"}\n' + jl(good[2:]))
w('bad_bom.jsonl', b'\xef\xbb\xbf' + (jl(good[:1]) + '{"text": "x"}\n' + jl(good[1:])).encode())
csv_rows = lambda rs, nl='\n': ''.join(f'"{r["text"]}",{r["label"]}{nl}' for r in rs)
w('bad_after_quoted_newline.csv', 'text,label\n"two\nlines, and ""quotes""",car\n' + csv_rows(good[:2]) + '"",car\n' + csv_rows(good[2:]))
w('bad_bom_crlf.csv', b'\xef\xbb\xbf' + ('text,label\r\n' + csv_rows(good[:2], '\r\n') + '"x",\r\n' + csv_rows(good[2:], '\r\n')).encode())
w('stranger_after_blank_lines.jsonl', '\n\n' + jl(good) + '\n' + jl([{'text': '天气 晴朗', 'label': 'weather'}]))
w('skip_csv_rows.csv', 'text,label\n"two\nlines",car\n"",car\n' + csv_rows(good) + '" ",game\n')
# CSV polars refuses, with the line a scan finds
w('too_many_fields.csv', 'text,label\n' + csv_rows(good[:3]) + '"a b",car,extra\n' + csv_rows(good[3:]))
w('unclosed_quote.csv', 'text,label\n' + csv_rows(good[:2]) + '"never closed,car\n' + csv_rows(good[2:]))
w('all_bad.jsonl', '{"text": "", "label": "car"}\n{"text": " ", "label": "game"}\n')
# vectors
vec = lambda n, d, k: f'{n} {d}\n' + ''.join(f'{t} ' + ' '.join(['0.1'] * d) + '\n' for t in '汽车游戏球队进'[:k])
w('short.vec', vec(10, 16, 3))
w('dim4.vec', vec(3, 4, 3))
w('bad_header.vec', 'vectors of chars\n' + ''.join(f'{t} 0.1 0.2\n' for t in '汽车'))
w('wrong_width.vec', '2 16\n汽 ' + ' '.join(['0.1'] * 16) + '\n车 0.1 0.2\n')
w('good16.vec', vec(3, 16, 3))
# binary vectors (found by tests/fuzz.rs): more entries than the header says; a header whose
# dimension is too large to allocate (it panicked)
import struct
binvec = lambda head, k: f'{head}\n'.encode() + b''.join(t.encode() + b' ' + struct.pack('<16f', *[0.1] * 16) + b'\n' for t in '汽车游戏球队进'[:k])
w('more_entries.bin', binvec('2 16', 3))
w('huge_dim.bin', binvec('3 9223372036854775807', 3))
os.makedirs(D + '/a_folder.jsonl', exist_ok=True)
open(D + '/a_folder.jsonl/.keep', 'w').write('')
os.makedirs(D + '/empty_checkpoint', exist_ok=True)
# a checkpoint whose model.safetensors is cut short (the first 60,000 bytes of the fixture's)
os.makedirs(D + '/cut_checkpoint', exist_ok=True)
fx = 'tests/fixtures/bert-tiny-cls/'
w('cut_checkpoint/config.json', open(fx + 'config.json').read())
w('cut_checkpoint/model.safetensors', open(fx + 'model.safetensors', 'rb').read()[:60000])
open(D + '/empty_checkpoint/.keep', 'w').write('')
# checkpoints with a tokenizer: the fixture's config and weights (the weights linked, not
# copied) with a vocab.txt of BERT's specials and CJK characters (the fixture has none); and the
# same with a tokenizer.json that has no classification token ([CLS] or <cls>)
def checkpoint(name):
    os.makedirs(D + '/' + name, exist_ok=True)
    w(name + '/config.json', open(fx + 'config.json').read())
    link = D + '/' + name + '/model.safetensors'
    if os.path.lexists(link):
        os.remove(link)
    os.symlink('../../../fixtures/bert-tiny-cls/model.safetensors', link)
specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
checkpoint('bert_checkpoint')
w('bert_checkpoint/vocab.txt', '\n'.join(specials + [chr(0x4e00 + i) for i in range(507)]) + '\n')
checkpoint('no_cls_checkpoint')
no_cls = [t for t in specials if t != '[CLS]'] + [chr(0x4e00 + i) for i in range(507)]
w('no_cls_checkpoint/tokenizer.json', json.dumps({
    'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': [],
    'normalizer': None, 'pre_tokenizer': {'type': 'Whitespace'}, 'post_processor': None,
    'decoder': None,
    'model': {'type': 'WordLevel', 'vocab': {t: i for i, t in enumerate(no_cls)}, 'unk_token': '[UNK]'},
}, ensure_ascii=False, indent=1) + '\n')
w('extra.txt', '汽车 很 快\n')
# awkward but valid
w('ok_bom.jsonl', b'\xef\xbb\xbf' + jl(good).encode())
w('ok_crlf.jsonl', jl(good).replace('\n', '\r\n'))
w('ok_blank_lines.jsonl', '\n' + jl(good[:5]) + '\n\n   \n' + jl(good[5:]) + '\n')
w('ok_dup_ids.jsonl', jl([dict(r, id=1) for r in good]))
w('ok_long_line.jsonl', jl(good[:1]) + json.dumps({'text': '汽' * 30000, 'label': 'car'}) + '\n' + jl(good[1:]))
w('ok_float_labels.jsonl', jl([{'text': r['text'], 'label': classes.index(r['label']) + 0.0} for r in good]))
w('ok_quoted_newline.csv', 'text,label\n"two\nlines, and ""quotes""",car\n' + ''.join(f'"{r["text"]}",{r["label"]}\n' for r in good))
w('ok_bom_crlf.csv', b'\xef\xbb\xbf' + ('text,label\r\n' + ''.join(f'"{r["text"]}",{r["label"]}\r\n' for r in good)).encode())
w('ok_skip_bad_rows.jsonl', jl(good[:2]) + '{"text": "", "label": "car"}\nnot json\n{"text": " ", "label": "game"}\n' + jl(good[2:]))
