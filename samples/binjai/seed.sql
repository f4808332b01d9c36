-- Seed data for the Binjai sample: reference villages and a few registered patients.
-- Village codes are illustrative, not the official Kemendagri codes.
INSERT INTO villages (code, name, district) VALUES
  ('1275010001', 'Kartini', 'Binjai Kota'),
  ('1275010002', 'Pekan Binjai', 'Binjai Kota'),
  ('1275010003', 'Satria', 'Binjai Kota'),
  ('1275010004', 'Setia', 'Binjai Kota'),
  ('1275010005', 'Tangsi', 'Binjai Kota'),
  ('1275020001', 'Jati Karya', 'Binjai Utara'),
  ('1275020002', 'Jati Makmur', 'Binjai Utara'),
  ('1275020003', 'Kebun Lada', 'Binjai Utara'),
  ('1275020004', 'Cengkeh Turi', 'Binjai Utara'),
  ('1275020005', 'Nangka', 'Binjai Utara'),
  ('1275030001', 'Tanah Tinggi', 'Binjai Timur'),
  ('1275030002', 'Mencirim', 'Binjai Timur'),
  ('1275030003', 'Sumber Karya', 'Binjai Timur'),
  ('1275030004', 'Timbang Langkat', 'Binjai Timur'),
  ('1275040001', 'Rambung Barat', 'Binjai Selatan'),
  ('1275040002', 'Tanah Merah', 'Binjai Selatan'),
  ('1275040003', 'Bhakti Karya', 'Binjai Selatan'),
  ('1275050001', 'Suka Ramai', 'Binjai Barat'),
  ('1275050002', 'Limau Sundai', 'Binjai Barat'),
  ('1275050003', 'Paya Roba', 'Binjai Barat');

INSERT INTO patients (id, nik, name, birth_date, sex, village_code, phone, clinic_id, updated_at) VALUES
  ('0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01', '1275014503880001', 'Siti Aminah', '1988-03-05', 'P', '1275010001', '081260001111', 'pkm-binjai-kota', '2026-11-01T08:00:00Z'),
  ('0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b02', '1275021207750002', 'Budi Santoso', '1975-07-12', 'L', '1275020003', '081370002222', 'pkm-kebun-lada', '2026-11-01T08:00:00Z'),
  ('0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b03', '1275036609920003', 'Rina Br Ginting', '1992-09-26', 'P', '1275030001', NULL, 'pkm-tanah-tinggi', '2026-11-01T08:00:00Z');

INSERT INTO visits (id, patient_id, clinic_id, visit_date, complaint, weight_kg, systolic, diastolic, notes) VALUES
  ('7d1e9c40-1f2b-4a55-8c66-0e3f5b2a9c01', '0b6f2a8e-4c1d-4e0a-9d3b-2f6c1a7e5b01', 'pkm-binjai-kota', '2026-11-02', 'Demam dan batuk', 58.5, 120, 80, 'Kontrol 3 hari lagi');

INSERT INTO diagnoses (visit_id, line, clinic_id, icd10, description) VALUES
  ('7d1e9c40-1f2b-4a55-8c66-0e3f5b2a9c01', 1, 'pkm-binjai-kota', 'J06.9', 'Infeksi saluran pernapasan atas akut');
